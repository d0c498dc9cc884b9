import { JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import type { MonitoringStage } from './monitoringmodel';

/** The main-area views the sidebar opens; each section gets this instead of knowing how tabs are made. */
export interface IViews {
  /** A release: timeline, gates, endpoint with its example request, approval, audit trail. */
  openRelease(releaseId: string): void;
  /** The validator's review page of a release awaiting approval. */
  openReview(releaseId: string): void;
  /** Runs side by side: metrics, params, lineage, plots of metric history. */
  openCompare(workspace: string | null, runIds: string[]): void;
  /** The audit log, filtered and exported (validators and platform admins). */
  openAudit(): void;
  /** Monitoring of the models the user may see; with `model`, that model (in `stage`) chosen. */
  openMonitoring(model?: string, stage?: MonitoringStage): void;
}

/**
 * Opens work in the main area, one tab per item, as jupyterlab-git opens a
 * diff: opening an item whose tab is open activates that tab.
 */
export class Tabs {
  private _open = new Map<string, MainAreaWidget>();

  constructor(private readonly _app: JupyterFrontEnd) {}

  open(id: string, label: string, create: () => Widget): MainAreaWidget {
    let tab = this._open.get(id);
    if (!tab || tab.isDisposed) {
      tab = new MainAreaWidget({ content: create() });
      tab.id = id;
      tab.title.label = label;
      tab.title.caption = label;
      tab.title.closable = true;
      tab.addClass('mlopshub-tab');
      tab.disposed.connect(() => this._open.delete(id));
      this._open.set(id, tab);
      this._app.shell.add(tab, 'main');
    }
    this._app.shell.activateById(tab.id);
    return tab;
  }
}
