/**
 * Reading the connection of a notebook's document provider.
 *
 * The stock RTC frontend (`@jupyter/docprovider-extension`) registers one
 * provider per open collaborative document in the `providers` map of the
 * `ICollaborativeContentProvider` it provides, keyed
 * `{format}:{contentType}:{path}`. Each provider is a `WebSocketProvider` of
 * `@jupyter/docprovider`, whose public `wsProvider` getter is the
 * y-websocket `WebsocketProvider` of the room (null until the session request
 * has been answered, replaced on reconnect). The token only promises an
 * `IDocumentProvider`, so the extra members are read structurally here.
 */
import type { ICollaborativeContentProvider } from '@jupyter/collaborative-drive';

/**
 * The members of y-websocket's `WebsocketProvider` (1.x) read here.
 */
export interface IYWebsocket {
  /** `{format}:{type}:{fileId}` */
  readonly roomname: string;
  readonly wsconnected: boolean;
  /** Whether the first sync with the server of the current connection is done. */
  readonly synced: boolean;
  /** The current websocket (null between connections). */
  readonly ws: WebSocket | null;
  /** Close the connection and stop reconnecting. */
  disconnect(): void;
  on(event: 'status' | 'sync' | 'connection-close', listener: (...args: unknown[]) => void): void;
  off(event: 'status' | 'sync' | 'connection-close', listener: (...args: unknown[]) => void): void;
}

/**
 * The members of `@jupyter/docprovider`'s `WebSocketProvider` read here.
 */
export interface IRoomProvider {
  readonly isDisposed: boolean;
  readonly wsProvider: IYWebsocket | null;
}

/**
 * The connection half of the room state; `read-only` is decided elsewhere.
 */
export type ConnectionState = 'connecting' | 'synced' | 'disconnected';

/**
 * The provider of the notebook at `path`, or null when there is none (no RTC
 * frontend, a document that is not collaborative, or one being closed).
 */
export function findRoomProvider(
  contentProvider: ICollaborativeContentProvider | null,
  path: string
): IRoomProvider | null {
  const provider: unknown = contentProvider?.providers.get(`json:notebook:${path}`);
  if (typeof provider !== 'object' || provider === null || !('wsProvider' in provider)) {
    return null;
  }
  return provider as IRoomProvider;
}

/**
 * The connection state of a provider.
 *
 * `everSynced` tells a first connection (`connecting` until the first sync)
 * from a lost one: once the room has been synced, anything short of a synced
 * connection is `disconnected` (y-websocket keeps retrying meanwhile; the
 * state does not flicker with each attempt).
 */
export function connectionState(
  provider: IRoomProvider | null,
  everSynced: boolean
): ConnectionState {
  if (provider === null || provider.isDisposed) {
    return 'disconnected';
  }
  // wsProvider is null while the provider asks the server for the session.
  const ws = provider.wsProvider;
  if (ws !== null && ws.wsconnected && ws.synced) {
    return 'synced';
  }
  return everSynced ? 'disconnected' : 'connecting';
}
