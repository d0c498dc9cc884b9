import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { LabIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Panel } from '@lumino/widgets';

import { DataSection } from './data';
import { ExperimentsSection } from './experiments';
import { ApprovalsSection, ModelsSection } from './models';
import { IMe } from './release';
import { API_VERSION, requestAPI } from './request';

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" d="M4 4h16v4H4zm0 6h10v4H4zm0 6h16v4H4z"/></svg>';
const icon = new LabIcon({ name: 'mlopshub-lab:sidebar', svgstr: ICON_SVG });

/** The sidebar panel: refreshes its sections whenever it is shown. */
class SidebarPanel extends Panel {
  onShown: () => void = () => undefined;

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.onShown();
  }
}

/**
 * The mlopshub sidebar: Data (DVC) and Experiments (MLflow) for the folder in
 * the file browser, Models (publish and follow releases) and, for model
 * validators, Approvals.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mlopshub-lab:plugin',
  description: 'Data versioning, experiments and publishing in one sidebar.',
  autoStart: true,
  requires: [IDefaultFileBrowser],
  optional: [ISettingRegistry],
  activate: (app: JupyterFrontEnd, browser: IDefaultFileBrowser, settings: ISettingRegistry | null) => {
    const panel = new SidebarPanel();
    panel.id = 'mlopshub-sidebar';
    panel.addClass('mlopshub-sidebar');
    panel.title.icon = icon;
    panel.title.caption = 'mlopshub: data, experiments, models';
    const data = new DataSection();
    let experiments = new ExperimentsSection();
    const models = new ModelsSection();
    let approvals: ApprovalsSection | null = null;
    panel.addWidget(data);
    panel.addWidget(experiments);
    panel.addWidget(models);
    app.shell.add(panel, 'left', { rank: 150 });

    const folderName = () => browser.model.path.split('/').filter(Boolean).pop() ?? '';
    const follow = () => {
      void data.showFolder(browser.model.path);
      void experiments.refresh(folderName());
    };
    // Models and approvals don't depend on the folder: they reload when the sidebar is shown.
    panel.onShown = () => {
      follow();
      void models.refresh();
      void approvals?.refresh();
    };
    browser.model.pathChanged.connect(() => {
      if (panel.isVisible) {
        follow();
      }
    });
    // Validators get the Approvals view; the pipeline still decides every approval itself.
    void requestAPI<IMe>('me')
      .then(me => {
        if (me.validator && !approvals) {
          approvals = new ApprovalsSection();
          panel.addWidget(approvals);
          if (panel.isVisible) {
            void approvals.refresh();
          }
        }
      })
      .catch(error => console.warn(`mlopshub-lab: no release pipeline here: ${error.message}`));
    void app.restored.then(() =>
      requestAPI<{ version: string; api: number }>('version')
        .then(reply => {
          if (reply.api !== API_VERSION) {
            console.warn(`mlopshub-lab: server API ${reply.api}, frontend ${API_VERSION}; reload after updating`);
          }
        })
        .catch(error => console.warn(`mlopshub-lab: server extension unavailable: ${error.message}`))
    );

    settings
      ?.load(plugin.id)
      .then(loaded => {
        const size = loaded.get('runsPageSize').composite as number;
        experiments.dispose();
        experiments = new ExperimentsSection(size);
        panel.insertWidget(1, experiments);
        if (panel.isVisible) {
          void experiments.refresh(folderName());
        }
      })
      .catch(() => undefined);

    app.commands.addCommand('mlopshub:track', {
      label: 'Track with DVC',
      caption: 'Version this file or folder with DVC',
      execute: async () => {
        const item = browser.selectedItems().next();
        if (item && !item.done) {
          app.shell.activateById(panel.id);
          await data.track(item.value.path);
        }
      }
    });
    app.contextMenu.addItem({ command: 'mlopshub:track', selector: '.jp-DirListing-item[data-isdir]', rank: 20 });
  }
};

export default plugin;
