import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Panel, Widget } from '@lumino/widgets';

import { AuditView } from './audit';
import { CompareView } from './compare';
import { DataSection } from './data';
import { button, h } from './dom';
import { ExperimentsSection } from './experiments';
import { ApprovalsSection, ModelsSection } from './models';
import { MonitoringView } from './monitoring';
import { IMe } from './release';
import { ReleasePage } from './releasepage';
import { API_VERSION, requestAPI } from './request';
import { Collapsible, SectionName, sectionsFor } from './sections';
import { tabId } from './model';
import { IViews, Tabs } from './views';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" d="M4 4h16v4H4zm0 6h10v4H4zm0 6h16v4H4z"/></svg>';
const icon = new LabIcon({ name: 'mlopshub-lab:sidebar', svgstr: ICON_SVG });
const PLUGIN_ID = 'mlopshub-lab:plugin';
const MONITORING_COMMAND = 'mlopshub:monitoring';

/** The sidebar panel: follows the file browser's folder whenever it is shown. */
class SidebarPanel extends Panel {
  onShown: () => void = () => undefined;

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.onShown();
  }
}

/** The Audit log section: one button that opens the log in a tab. */
class AuditSection extends Widget {
  constructor(views: IViews) {
    super();
    this.addClass('mlopshub-section');
    this.id = 'mlopshub-audit';
    this.node.append(
      h('h3', {}, 'Audit log'),
      h('div', { class: 'mlopshub-section-body' }, h('p', { class: 'mlopshub-hint' }, 'Every release step, decision and refusal, filtered and exported.'), button('Open the audit log', () => views.openAudit(), { id: 'mlopshub-open-audit', 'data-testid': 'mlopshub-open-audit' }))
    );
  }
}

/** The main-area views, one tab per item. */
function makeViews(app: JupyterFrontEnd): IViews {
  const tabs = new Tabs(app);
  return {
    openRelease: id => tabs.open(tabId('release', id), `Release ${id}`, () => new ReleasePage(id, 'release')),
    openReview: id => tabs.open(tabId('review', id), `Review ${id}`, () => new ReleasePage(id, 'review')),
    openCompare: (workspace, runs) => tabs.open(tabId('compare', ...[...runs].sort()), `Compare ${runs.length} runs`, () => new CompareView(workspace, runs)),
    openAudit: () => tabs.open(tabId('audit'), 'Audit log', () => new AuditView()),
    openMonitoring: (model, stage) => {
      // One Monitoring tab: opening it for a model chooses that model there.
      const tab = tabs.open(tabId('monitoring'), 'Monitoring', () => new MonitoringView());
      if (model) {
        (tab.content as MonitoringView).select(model, stage ?? null);
      }
    }
  };
}

/**
 * The mlopshub sidebar: an index of the user's work, with only the sections
 * their roles use (Data, Experiments and Models for team members, Approvals
 * for model validators, the Audit log for validators and platform admins),
 * each collapsible and with a badge for what needs attention. The work itself
 * opens in main-area tabs: run comparisons, releases, review pages, the audit
 * log, and Monitoring (also the command "Monitoring", for validators).
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Data versioning, experiments and publishing in one sidebar, work in main-area tabs.',
  autoStart: true,
  requires: [IDefaultFileBrowser],
  optional: [ISettingRegistry, ICommandPalette],
  activate: (app: JupyterFrontEnd, browser: IDefaultFileBrowser, registry: ISettingRegistry | null, palette: ICommandPalette | null) => {
    const panel = new SidebarPanel();
    panel.id = 'mlopshub-sidebar';
    panel.addClass('mlopshub-sidebar');
    panel.title.icon = icon;
    panel.title.caption = 'mlopshub: data, experiments, models';
    app.shell.add(panel, 'left', { rank: 150 });

    let me: IMe | null = null;
    const views = makeViews(app);
    // Validators' way in (they see every team's models there); team members also open a model from the Models section.
    app.commands.addCommand(MONITORING_COMMAND, {
      label: 'Monitoring',
      caption: 'Traffic, drift and quality of the models in staging and production',
      execute: () => views.openMonitoring()
    });
    palette?.addItem({ command: MONITORING_COMMAND, category: 'mlopshub' });
    const whoAmI = requestAPI<IMe>('me').catch(error => {
      console.warn(`mlopshub-lab: no release pipeline here: ${error.message}`);
      return null;
    });
    const settings = registry ? registry.load(PLUGIN_ID).catch(() => null) : Promise.resolve(null);

    void Promise.all([whoAmI, settings]).then(([answer, loaded]) => {
      me = answer;
      const pageSize = (loaded?.get('runsPageSize').composite as number | undefined) ?? 50;
      const collapsed = new Set((loaded?.get('collapsedSections').composite as string[] | undefined) ?? []);
      const remember = (name: SectionName, isCollapsed: boolean) => {
        if (isCollapsed) {
          collapsed.add(name);
        } else {
          collapsed.delete(name);
        }
        void loaded?.set('collapsedSections', [...collapsed]).catch(error => console.warn(`mlopshub-lab: ${error.message}`));
      };
      const add = (name: SectionName, section: Widget): Collapsible => {
        panel.addWidget(section);
        return new Collapsible(section, collapsed.has(name), isCollapsed => remember(name, isCollapsed));
      };
      const shown = sectionsFor(me);
      const data = shown.includes('data') ? new DataSection() : null;
      const experiments = shown.includes('experiments') ? new ExperimentsSection(views, pageSize) : null;
      const models = shown.includes('models') ? new ModelsSection(views) : null;
      const approvals = shown.includes('approvals') ? new ApprovalsSection(views) : null;
      if (data) {
        const header = add('data', data);
        data.onCount = count => header.badge(count, 'dataset(s) not pushed to the team remote');
      }
      if (experiments) {
        add('experiments', experiments);
      }
      if (models) {
        add('models', models);
      }
      if (approvals) {
        const header = add('approvals', approvals);
        approvals.onCount = count => header.badge(count, 'release(s) awaiting approval');
      }
      if (shown.includes('audit')) {
        add('audit', new AuditSection(views));
      }
      if (!shown.length) {
        panel.addWidget(new Widget({ node: h('p', { class: 'mlopshub-empty', id: 'mlopshub-nothing' }, 'You are in no team and hold no validator or admin role: ask your platform admin to add you to a team.') }));
      }

      const folderName = () => browser.model.path.split('/').filter(Boolean).pop() ?? '';
      const follow = () => {
        void data?.showFolder(browser.model.path);
        void experiments?.refresh(folderName());
      };
      // Lists of releases follow the pipeline by themselves (polls); the folder's data, its runs and the
      // logged models (new ones come from notebooks) are looked at again when the sidebar is shown.
      panel.onShown = () => {
        follow();
        void models?.refresh();
      };
      browser.model.pathChanged.connect(() => panel.isVisible && follow());
      void approvals?.refresh();
      if (panel.isVisible) {
        panel.onShown();
      }

      app.commands.addCommand('mlopshub:track', {
        label: 'Track with DVC',
        caption: 'Version this file or folder with DVC',
        isVisible: () => data !== null,
        execute: async () => {
          const item = browser.selectedItems().next();
          if (data && item && !item.done) {
            app.shell.activateById(panel.id);
            await data.track(item.value.path);
          }
        }
      });
      app.contextMenu.addItem({ command: 'mlopshub:track', selector: '.jp-DirListing-item[data-isdir]', rank: 20 });
    });

    void app.restored.then(() =>
      requestAPI<{ version: string; api: number }>('version')
        .then(reply => {
          if (reply.api !== API_VERSION) {
            console.warn(`mlopshub-lab: server API ${reply.api}, frontend ${API_VERSION}; reload after updating`);
          }
        })
        .catch(error => console.warn(`mlopshub-lab: server extension unavailable: ${error.message}`))
    );
  }
};

export default plugin;
