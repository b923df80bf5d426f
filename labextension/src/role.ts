/**
 * The user's role on an open notebook, heard live.
 *
 * When an owner changes someone's role on a document, the room tells every
 * connection of that user at once, with a RAW `{"type": "role"}` message (see
 * `raw.ts`), rather than leaving it to the room endpoint's next poll (up to
 * 5 s, and only for the current tab): a viewer made editor may type without
 * reloading, an editor made viewer is read-only before their next keystroke
 * would be refused, and someone whose role was revoked is told why the
 * notebook stopped following the room. The room closes a revoked user's
 * connections (4403) and would refuse new ones, so the provider is told to
 * stop reconnecting.
 */
import type { ICollaborativeContentProvider } from '@jupyter/collaborative-drive';
import type { IDisposable } from '@lumino/disposable';
import { ISignal, Signal } from '@lumino/signaling';

import { IYWebsocket, findRoomProvider } from './provider';
import { IRoleNotice, readRoleNotice } from './raw';

/**
 * How often the watcher looks for a new provider of the notebook (the
 * document provider replaces its y-websocket provider when it starts over),
 * in ms. A new socket of the same provider is seen at once, on its `status`
 * event, before any message can arrive on it.
 */
const PROVIDER_CHECK_INTERVAL = 1000;

/**
 * Listens to the room connection of the notebook at `path()` for role notices.
 */
export class RoleWatcher implements IDisposable {
  constructor(
    contentProvider: ICollaborativeContentProvider | null,
    path: () => string
  ) {
    this._contentProvider = contentProvider;
    this._path = path;
    this._timer = window.setInterval(this._attach, PROVIDER_CHECK_INTERVAL);
    this._attach();
  }

  /**
   * Emitted with each role notice of the notebook's room.
   */
  get noticed(): ISignal<this, IRoleNotice> {
    return this._noticed;
  }

  /**
   * Emitted when the watcher starts listening to a new connection of the
   * room: a notice sent on it before then was missed (the document provider's
   * first connection opens before the watcher can know of it), so whoever
   * follows the role asks the room endpoint once.
   */
  get connected(): ISignal<this, void> {
    return this._connected;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /**
   * Stop the notebook's provider from reconnecting (after a revocation).
   */
  stopReconnecting(): void {
    this._ws?.disconnect();
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    window.clearInterval(this._timer);
    this._ws?.off('status', this._attach);
    this._ws = null;
    this._socket?.removeEventListener('message', this._onMessage);
    this._socket = null;
    Signal.clearData(this);
  }

  private _attach = (): void => {
    if (this._isDisposed) {
      return;
    }
    const ws = findRoomProvider(this._contentProvider, this._path())?.wsProvider ?? null;
    if (ws !== this._ws) {
      this._ws?.off('status', this._attach);
      this._ws = ws;
      ws?.on('status', this._attach);
    }
    const socket = ws?.ws ?? null;
    if (socket !== this._socket) {
      this._socket?.removeEventListener('message', this._onMessage);
      this._socket = socket;
      socket?.addEventListener('message', this._onMessage);
      if (socket !== null) {
        this._connected.emit();
      }
    }
  };

  private _onMessage = (event: MessageEvent): void => {
    const notice = readRoleNotice(event.data);
    if (notice !== null) {
      this._noticed.emit(notice);
    }
  };

  private _connected = new Signal<this, void>(this);
  private _contentProvider: ICollaborativeContentProvider | null;
  private _isDisposed = false;
  private _noticed = new Signal<this, IRoleNotice>(this);
  private _path: () => string;
  private _socket: WebSocket | null = null;
  private _timer: number;
  private _ws: IYWebsocket | null = null;
}
