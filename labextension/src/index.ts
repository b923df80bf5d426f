/**
 * jupyter-ydjango's JupyterLab extension: the "Copy room link" command, the
 * share dialog behind the top bar's share button (in place of
 * jupyter-collaboration-ui's server link), the room status item of the status bar, who made each point
 * of the timeline beside its slider, read-only notebooks for users who may
 * only read a room, and no kernel started for those who may not run one.
 */
import { ICollaborativeContentProvider, IGlobalAwareness } from '@jupyter/collaborative-drive';
import { IAwareness } from '@jupyter/ydoc';
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { linkIcon, shareIcon } from '@jupyterlab/ui-components';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { Signal } from '@lumino/signaling';

import { addTimelineAuthors } from './authors';
import { startKernelsForRunnersOnly } from './kernel';
import { copyRoomLink } from './link';
import { RoomMonitor } from './monitor';
import { refreshCollaboratorsPanel } from './presence';
import { findRoomProvider } from './provider';
import { ReadOnlyNotebook, refuseDocumentCommands } from './readonly';
import { RoleWatcher } from './role';
import { fetchRoomInfoOf } from './room';
import { openShareDialog } from './share';
import { RoomStatusItem, STATUS_ID } from './status';

export const PLUGIN_ID = 'jupyter-ydjango:plugin';

export namespace CommandIDs {
  export const copyRoomLink = 'ydjango:copy-room-link';
  /**
   * The share command of jupyter-collaboration-ui (its top bar button). Its
   * plugin is disabled by this extension (see `disabledExtensions` in
   * package.json): the command opens our share dialog here (the room link,
   * roles and role links of the notebook), not the stock one, which shares
   * the whole server.
   */
  export const share = 'collaboration:shared-link';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Room link, room status and read-only rooms for collaborative notebooks served by jupyter-ydjango.',
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
    tracker.widgetAdded.connect((_, panel) =>
      startKernelsForRunnersOnly(panel, app.serviceManager.serverSettings)
    );
    const readOnlyOf = addReadOnlyNotebooks(app, tracker, contentProvider);
    if (statusBar) {
      addRoomStatus(app, tracker, statusBar, contentProvider, readOnlyOf);
      addTimelineAuthors(app, statusBar);
    } else {
      // Notebook 7 has no status bar: each notebook's toolbar shows its room.
      addToolbarRoomStatus(app, tracker, contentProvider, readOnlyOf);
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

  const execute = async (args: ReadonlyPartialJSONObject) => {
    const path = targetPath(args);
    if (path === null) {
      return;
    }
    return copyRoomLink(app.serviceManager.contents.localPath(path));
  };
  app.commands.addCommand(CommandIDs.copyRoomLink, {
    label: 'Copy room link',
    caption: 'Copy a link that opens this notebook for a co-editor',
    icon: linkIcon,
    isEnabled: args => targetPath(args) !== null,
    execute
  });
  // Where jupyter-collaboration-ui's share plugin was re-enabled, its command stays.
  if (!app.commands.hasCommand(CommandIDs.share)) {
    app.commands.addCommand(CommandIDs.share, {
      label: 'Share…',
      caption: 'Share the current notebook: its room link, who has which role, role links',
      icon: shareIcon,
      isEnabled: () => targetPath({}) !== null,
      execute: () => {
        const path = targetPath({});
        if (path === null) {
          return;
        }
        return openShareDialog(
          app.serviceManager.contents.localPath(path),
          app.serviceManager.serverSettings
        );
      }
    });
  }
  const changed = () => {
    app.commands.notifyCommandChanged(CommandIDs.copyRoomLink);
    if (app.commands.hasCommand(CommandIDs.share)) {
      app.commands.notifyCommandChanged(CommandIDs.share);
    }
  };
  tracker.currentChanged.connect(changed);
  app.shell.currentChanged?.connect(changed);
}

/**
 * Read-only notebooks: each open notebook gets a `ReadOnlyNotebook`, told
 * whether its room is read-only by the room endpoint once the notebook is ready
 * and on each new connection of its room, by the room's role notices as soon
 * as the user's role changes (`role.ts`), and by the room status's polling
 * while it is the current tab. Returns the `ReadOnlyNotebook` of a panel.
 */
function addReadOnlyNotebooks(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  contentProvider: ICollaborativeContentProvider | null
): (panel: NotebookPanel) => ReadOnlyNotebook | null {
  const notebooks = new Map<NotebookPanel, ReadOnlyNotebook>();

  const watch = (panel: NotebookPanel): void => {
    if (notebooks.has(panel) || panel.isDisposed) {
      return;
    }
    const notebook = new ReadOnlyNotebook(panel, app.serviceManager.contents);
    notebooks.set(panel, notebook);
    const role = new RoleWatcher(contentProvider, () => panel.context.path);
    // Role notices are the room's latest word: a room endpoint answer asked for
    // before the last notice is older than it.
    let notices = 0;
    const askRoom = async (): Promise<void> => {
      const asked = notices;
      const path = panel.context.path;
      const roomName = findRoomProvider(contentProvider, path)?.wsProvider?.roomname ?? null;
      try {
        const room = await fetchRoomInfoOf(path, roomName, app.serviceManager.serverSettings);
        if (!notebook.isDisposed && notices === asked) {
          notebook.roomReadOnly = room.readOnly;
        }
      } catch (reason) {
        // No room endpoint (or out of reach): the room status polls again.
        console.debug('jupyter-ydjango: no room information for', path, reason);
      }
    };
    role.noticed.connect((_, notice) => {
      notices++;
      notebook.roomReadOnly = notice.readOnly;
      if (notice.revoked) {
        role.stopReconnecting();
        notebook.revoked(notice.expired);
      }
    });
    role.connected.connect(() => void askRoom());
    panel.disposed.connect(() => {
      notebooks.delete(panel);
      role.dispose();
    });
    // The provider has synced once the context is ready: its room name is known.
    void panel.context.ready.then(() => {
      if (!notebook.isDisposed && notebook.roomReadOnly === null) {
        void askRoom();
      }
    });
  };

  tracker.forEach(watch);
  tracker.widgetAdded.connect((_, panel) => watch(panel));
  // The notebook commands act on the current notebook.
  refuseDocumentCommands(app.commands, () => {
    const current = tracker.currentWidget;
    return current === null ? null : (notebooks.get(current) ?? null);
  });
  return panel => notebooks.get(panel) ?? null;
}

/**
 * The status item, showing the room of the notebook in the main area's
 * current tab (nothing while another kind of document is current).
 */
function addRoomStatus(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  statusBar: IStatusBar,
  contentProvider: ICollaborativeContentProvider | null,
  readOnlyOf: (panel: NotebookPanel) => ReadOnlyNotebook | null
): void {
  const item = new RoomStatusItem({ id: STATUS_ID });
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
      item.monitor = newMonitor(app, panel, contentProvider, readOnlyOf);
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

/**
 * A monitor of the room of `panel`, which also tells the panel's read-only
 * notebook whether the room is read-only.
 */
function newMonitor(
  app: JupyterFrontEnd,
  panel: NotebookPanel,
  contentProvider: ICollaborativeContentProvider | null,
  readOnlyOf: (panel: NotebookPanel) => ReadOnlyNotebook | null
): RoomMonitor {
  const monitor = new RoomMonitor({
    context: panel.context,
    contentProvider,
    serverSettings: app.serviceManager.serverSettings
  });
  // Connected before any item: the notebook is read-only by the time it says so.
  // Only what the monitor learns is passed on, not what it has said before: the
  // notebook may have heard a role change since (see `addReadOnlyNotebooks`).
  let told: boolean | null = null;
  monitor.changed.connect(() => {
    const notebook = readOnlyOf(panel);
    const readOnly = monitor.roomReadOnly;
    if (notebook !== null && readOnly !== null && readOnly !== told) {
      told = readOnly;
      notebook.roomReadOnly = readOnly;
    }
  });
  return monitor;
}

/**
 * Where there is no status bar (Notebook 7), a status item in each notebook's
 * toolbar, next to the kernel's, watching that notebook's room for as long as
 * the notebook is open.
 */
function addToolbarRoomStatus(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  contentProvider: ICollaborativeContentProvider | null,
  readOnlyOf: (panel: NotebookPanel) => ReadOnlyNotebook | null
): void {
  const add = (panel: NotebookPanel): void => {
    if (panel.isDisposed) {
      return;
    }
    const item = new RoomStatusItem();
    item.addClass('ydjango-RoomStatus-toolbar');
    const monitor = newMonitor(app, panel, contentProvider, readOnlyOf);
    item.monitor = monitor;
    if (!panel.toolbar.insertAfter('spacer', TOOLBAR_STATUS_ITEM, item)) {
      panel.toolbar.addItem(TOOLBAR_STATUS_ITEM, item);
    }
    panel.disposed.connect(() => {
      item.dispose();
      monitor.dispose();
    });
  };
  tracker.forEach(add);
  tracker.widgetAdded.connect((_, panel) => add(panel));
}

/**
 * The name of the toolbar item of the room status (Notebook 7).
 */
const TOOLBAR_STATUS_ITEM = 'ydjango-room-status';

/**
 * The collaborators panel lists everyone present whenever it is opened (see
 * `presence.ts`).
 */
const presencePlugin: JupyterFrontEndPlugin<void> = {
  id: `${PLUGIN_ID}-presence`,
  description: 'Lists everyone present in the collaborators panel whenever it is opened.',
  autoStart: true,
  optional: [IGlobalAwareness],
  activate: (app: JupyterFrontEnd, awareness: IAwareness | null): void => {
    if (awareness) {
      void refreshCollaboratorsPanel(app, awareness);
    }
  }
};

export default [plugin, presencePlugin];
