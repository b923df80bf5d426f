/**
 * The room status of one open notebook, gathered from the document provider,
 * the shared model's awareness, the document context and the server's room
 * endpoint.
 */
import type { ICollaborativeContentProvider } from '@jupyter/collaborative-drive';
import type { DocumentRegistry } from '@jupyterlab/docregistry';
import type { INotebookModel } from '@jupyterlab/notebook';
import type { ServerConnection } from '@jupyterlab/services';
import type { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { IRoomProvider, IYWebsocket, connectionState, findRoomProvider } from './provider';
import { readFileNotice, readRoleNotice } from './raw';
import { IRoomInfo, fetchRoomInfo, fileIdOfRoom, requestFileId } from './room';

/**
 * What the status bar shows about a room.
 */
export type RoomState = 'connecting' | 'synced' | 'read-only' | 'disconnected' | 'deleted';

export interface IRoomStatus {
  state: RoomState;
  /** Number of awareness states in the document: the people in the room, us included. */
  people: number;
  /** When the room last saved the notebook (null: not known to have). */
  lastSaved: Date | null;
  /**
   * When the file was last written, as far as the server knows (null: not
   * known), and by whom: the room (a save) or something outside it.
   */
  writtenAt: Date | null;
  writtenBy: 'room' | 'outside' | null;
  /** Why the server's last save failed, or null. */
  saveError: string | null;
  /** Why the server cannot store the room's changes now, or null. */
  storeError: string | null;
  /** Why the file is read-only for everyone, or null. */
  fileReadOnly: string | null;
  fileId: string | null;
  /** Connections to the room the server counts, when its room endpoint answers. */
  connections: number | null;
}

/**
 * How often the room endpoint is asked while the page is visible, in ms.
 */
export const ROOM_POLL_INTERVAL = 5000;

/**
 * The longest wait between two requests after failures (e.g. a server
 * without the room endpoint answers 404), in ms.
 */
export const ROOM_POLL_MAX_INTERVAL = 60000;

/**
 * Watches the room of one notebook. Dispose it when the notebook stops being
 * shown; it then stops polling and lets go of every listener.
 */
export class RoomMonitor implements IDisposable {
  constructor(options: RoomMonitor.IOptions) {
    this._context = options.context;
    this._contentProvider = options.contentProvider;
    this._serverSettings = options.serverSettings;

    const model = this._context.model;
    model.sharedModel.awareness.on('change', this._emitChanged);
    model.stateChanged.connect(this._emitChanged, this);
    this._context.fileChanged.connect(this._emitChanged, this);
    this._context.pathChanged.connect(this._emitChanged, this);

    this._poll = new Poll({
      auto: false,
      factory: () => this._fetchRoom(),
      frequency: { interval: ROOM_POLL_INTERVAL, backoff: true, max: ROOM_POLL_MAX_INTERVAL },
      name: 'jupyter-ydjango:room',
      standby: 'when-hidden'
    });
    // The provider has synced once the context is ready, so its room name
    // (and the file id in it) is known by then.
    void this._context.ready.then(() => {
      if (!this.isDisposed) {
        void this._poll.start();
      }
    });
    this.refresh();
  }

  /**
   * Emitted when something shown may have changed.
   */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /**
   * The room status now.
   */
  get status(): IRoomStatus {
    const provider = this._provider();
    const connection = connectionState(provider, this._everSynced);
    const room = this._room;
    const contents = this._context.contentsModel;
    // The room's word, once known, is newer than the contents model's (read when the
    // notebook was opened: a role may have changed since); it covers read-only files too.
    const readOnly =
      (room !== null ? room.readOnly : contents?.writable === false) ||
      this._context.model.readOnly;
    let state: RoomState = connection === 'synced' && readOnly ? 'read-only' : connection;
    if (this._deleted && connection !== 'disconnected') {
      state = 'deleted';
    }
    // Only what the server knows: the file's modification time alone would show
    // a "saved" time for a file the room never wrote.
    const writtenAt = parseDate(room?.writtenAt);
    return {
      state,
      people: this._context.model.sharedModel.awareness.getStates().size,
      lastSaved: parseDate(room?.lastSaved),
      writtenAt,
      writtenBy: writtenAt === null ? null : (room?.writtenBy ?? null),
      saveError: room?.saveError ?? null,
      storeError: room?.storeError ?? null,
      fileReadOnly: room?.fileReadOnly ?? null,
      fileId: this._fileId(),
      connections: room ? room.connections : null
    };
  }

  /**
   * Whether the room endpoint says the room is read-only for us; null until
   * it has answered (or when its last request failed).
   */
  get roomReadOnly(): boolean | null {
    return this._room ? this._room.readOnly : null;
  }

  /**
   * Look at the document provider again: it creates its y-websocket provider
   * only after the session request, and a new one on each reconnect.
   */
  refresh(): void {
    if (this._isDisposed) {
      return;
    }
    const ws = this._provider()?.wsProvider ?? null;
    if (ws !== this._ws) {
      this._ws?.off('status', this._emitChanged);
      this._ws?.off('sync', this._onSync);
      this._ws = ws;
      ws?.on('status', this._emitChanged);
      ws?.on('sync', this._onSync);
    }
    // The socket changes with each reconnection of the provider.
    const socket = ws?.ws ?? null;
    if (socket !== this._socket) {
      this._socket?.removeEventListener('message', this._onMessage);
      this._socket = socket;
      socket?.addEventListener('message', this._onMessage);
    }
    if (ws?.synced) {
      this._everSynced = true;
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._poll.dispose();
    this._ws?.off('status', this._emitChanged);
    this._ws?.off('sync', this._onSync);
    this._ws = null;
    this._socket?.removeEventListener('message', this._onMessage);
    this._socket = null;
    this._context.model.sharedModel.awareness.off('change', this._emitChanged);
    Signal.clearData(this);
  }

  private _provider(): IRoomProvider | null {
    return findRoomProvider(this._contentProvider, this._context.path);
  }

  private _fileId(): string | null {
    const room = this._ws?.roomname ?? this._context.model.sharedModel.getState('document_id');
    return (typeof room === 'string' ? fileIdOfRoom(room) : null) ?? this._sessionFileId;
  }

  private async _fetchRoom(): Promise<void> {
    let fileId = this._fileId();
    if (fileId === null) {
      // No provider told us (RTC off for this document, or it has not
      // connected): ask the session endpoint like the provider does.
      fileId = this._sessionFileId = await requestFileId(
        this._context.path,
        this._serverSettings
      );
    }
    const notices = this._roleNotices;
    try {
      const room = await fetchRoomInfo(fileId, this._serverSettings);
      if (this._roleNotices !== notices) {
        room.readOnly = this._roleReadOnly;
      }
      this._room = room;
      this._deleted = this._room.deleted;
    } catch (error) {
      // A server without the endpoint (404) or out of reach: show what the
      // client knows, and let the poll back off.
      this._room = null;
      throw error;
    } finally {
      this._emitChanged();
    }
  }

  /**
   * The room's notices about its file arrive on the document's websocket: the
   * status changes at once, without waiting for the next poll.
   */
  private _onMessage = (event: MessageEvent): void => {
    const notice = readFileNotice(event.data);
    if (notice !== null) {
      this._deleted = notice.status === 'deleted';
      this._emitChanged();
    }
    const role = readRoleNotice(event.data);
    if (role !== null) {
      // The room's word is newer than the last poll's (and than one in flight).
      this._roleNotices++;
      this._roleReadOnly = role.readOnly;
      if (this._room !== null) {
        this._room = { ...this._room, readOnly: role.readOnly };
      }
      this._emitChanged();
    }
  };

  private _onSync = (synced: unknown): void => {
    if (synced === true) {
      this._everSynced = true;
    }
    this._emitChanged();
  };

  private _emitChanged = (): void => {
    if (!this._isDisposed) {
      this._changed.emit();
    }
  };

  private _changed = new Signal<this, void>(this);
  private _contentProvider: ICollaborativeContentProvider | null;
  private _context: DocumentRegistry.IContext<INotebookModel>;
  private _deleted = false;
  private _everSynced = false;
  private _isDisposed = false;
  private _poll: Poll;
  private _roleNotices = 0;
  private _roleReadOnly = false;
  private _room: IRoomInfo | null = null;
  private _serverSettings: ServerConnection.ISettings;
  private _sessionFileId: string | null = null;
  private _socket: WebSocket | null = null;
  private _ws: IYWebsocket | null = null;
}

export namespace RoomMonitor {
  export interface IOptions {
    context: DocumentRegistry.IContext<INotebookModel>;
    /** The RTC frontend's content provider; null when it is not installed. */
    contentProvider: ICollaborativeContentProvider | null;
    serverSettings: ServerConnection.ISettings;
  }
}

function parseDate(value: string | null | undefined): Date | null {
  if (!value) {
    return null;
  }
  const date = new Date(value);
  return isNaN(date.getTime()) ? null : date;
}
