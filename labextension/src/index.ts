/**
 * jupyter-ydjango's JupyterLab extension: the "Copy room link" command and
 * the room status item of the status bar.
 */
import { ICollaborativeContentProvider } from '@jupyter/collaborative-drive';
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { linkIcon } from '@jupyterlab/ui-components';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { Signal } from '@lumino/signaling';

import { copyRoomLink } from './link';
import { RoomMonitor } from './monitor';
import { RoomStatusItem } from './status';

export const PLUGIN_ID = 'jupyter-ydjango:plugin';

export namespace CommandIDs {
  export const copyRoomLink = 'ydjango:copy-room-link';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Room link and room status for collaborative notebooks served by jupyter-ydjango.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, IStatusBar, ICollaborativeContentProvider, IDefaultFileBrowser],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    statusBar: IStatusBar | null,
    contentProvider: ICollaborativeContentProvider | null,
    fileBrowser: IDefaultFileBrowser | null
  ): void => {
    addCopyRoomLink(app, tracker, fileBrowser);
    palette?.addItem({ command: CommandIDs.copyRoomLink, category: 'Collaboration' });
    if (statusBar) {
      addRoomStatus(app, tracker, statusBar, contentProvider);
    }
  }
};

/**
 * The command. Its target is the notebook of the file browser's selection
 * when the file browser's context menu runs it (with `source: "filebrowser"`,
 * see the settings schema), and the current notebook otherwise (palette,
 * notebook toolbar and context menu).
 */
function addCopyRoomLink(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  fileBrowser: IDefaultFileBrowser | null
): void {
  const targetPath = (args: ReadonlyPartialJSONObject): string | null => {
    if (args.source === 'filebrowser') {
      const item = fileBrowser?.selectedItems().next();
      if (!item || item.done || item.value.type !== 'notebook') {
        return null;
      }
      return item.value.path;
    }
    return tracker.currentWidget?.context.path ?? null;
  };

  app.commands.addCommand(CommandIDs.copyRoomLink, {
    label: 'Copy room link',
    caption: 'Copy a link that opens this notebook for a co-editor',
    icon: linkIcon,
    isEnabled: args => targetPath(args) !== null,
    execute: async args => {
      const path = targetPath(args);
      if (path === null) {
        return;
      }
      return copyRoomLink(app.serviceManager.contents.localPath(path));
    }
  });
  tracker.currentChanged.connect(() => app.commands.notifyCommandChanged(CommandIDs.copyRoomLink));
}

/**
 * The status item, showing the room of the notebook in the main area's
 * current tab (nothing while another kind of document is current).
 */
function addRoomStatus(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  statusBar: IStatusBar,
  contentProvider: ICollaborativeContentProvider | null
): void {
  const item = new RoomStatusItem();
  const activeStateChanged = new Signal<RoomStatusItem, void>(item);
  let shown: NotebookPanel | null = null;

  const currentNotebook = (): NotebookPanel | null => {
    const current = app.shell.currentWidget;
    if (current === null) {
      return null;
    }
    return tracker.has(current) ? (current as NotebookPanel) : null;
  };

  const update = (): void => {
    const panel = currentNotebook();
    if (panel === shown) {
      return;
    }
    item.monitor?.dispose();
    item.monitor = null;
    shown = panel;
    if (panel !== null) {
      item.monitor = new RoomMonitor({
        context: panel.context,
        contentProvider,
        serverSettings: app.serviceManager.serverSettings
      });
    }
    activeStateChanged.emit();
  };

  app.shell.currentChanged?.connect(update);
  tracker.currentChanged.connect(update);
  tracker.widgetAdded.connect(update);

  statusBar.registerStatusItem('jupyter-ydjango:room-status', {
    item,
    align: 'left',
    rank: 1000,
    isActive: () => item.monitor !== null,
    activeStateChanged
  });
  void app.restored.then(update);
}

export default plugin;
