/**
 * The server's answers about a room: the collaboration session (for the
 * file id) and jupyter-ydjango's room endpoint (for saves and read-only).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * `GET {base}api/ydjango/rooms/{fileId}`.
 */
export interface IRoomInfo {
  fileId: string;
  path: string;
  room: string;
  loaded: boolean;
  connections: number;
  /** ISO-8601 time of the room's last successful save, or null. */
  lastSaved: string | null;
  /**
   * ISO-8601 time the file was last written, as far as the server knows, or
   * null while unknown; `writtenBy` says who wrote it then.
   */
  writtenAt: string | null;
  writtenBy: 'room' | 'outside' | null;
  /** Why the last save failed, or null. */
  saveError: string | null;
  /**
   * Why the room's changes cannot be stored in the database now (they are kept
   * in memory and retried), or null.
   */
  storeError: string | null;
  /**
   * Why the file is read-only for everyone (the server's contents manager does
   * not let it be written), or null.
   */
  fileReadOnly: string | null;
  readOnly: boolean;
  /** Whether the file was deleted (the room no longer saves it). */
  deleted: boolean;
}

/**
 * The file id in a room id `{format}:{type}:{fileId}`, or null for any other
 * room id (awareness-only rooms have fewer parts).
 */
export function fileIdOfRoom(room: string): string | null {
  const parts = room.split(':');
  if (parts.length < 3) {
    return null;
  }
  const fileId = parts.slice(2).join(':');
  return fileId === '' ? null : fileId;
}

/**
 * The file id of a notebook, from the collaboration session endpoint.
 *
 * This is the request the document provider makes before it connects; the
 * server answers it idempotently (200 once the file is known).
 */
export async function requestFileId(
  path: string,
  settings: ServerConnection.ISettings
): Promise<string> {
  const url = URLExt.join(settings.baseUrl, 'api/collaboration/session', encodeURIComponent(path));
  const init = { method: 'PUT', body: JSON.stringify({ format: 'json', type: 'notebook' }) };
  const session = await requestJSON(url, init, settings);
  const fileId = (session as { fileId?: unknown }).fileId;
  if (typeof fileId !== 'string' || fileId === '') {
    throw new Error(`The collaboration session of ${path} has no file id`);
  }
  return fileId;
}

/**
 * The room endpoint's view of the room of `fileId`.
 *
 * Rejects on any failure, including a 404 from a server without the endpoint;
 * callers treat the endpoint as optional.
 */
export async function fetchRoomInfo(
  fileId: string,
  settings: ServerConnection.ISettings
): Promise<IRoomInfo> {
  const url = URLExt.join(settings.baseUrl, 'api/ydjango/rooms', encodeURIComponent(fileId));
  const data = (await requestJSON(url, { method: 'GET' }, settings)) as Partial<IRoomInfo>;
  return {
    fileId: typeof data.fileId === 'string' ? data.fileId : fileId,
    path: typeof data.path === 'string' ? data.path : '',
    room: typeof data.room === 'string' ? data.room : '',
    loaded: data.loaded === true,
    connections: typeof data.connections === 'number' ? data.connections : 0,
    lastSaved: typeof data.lastSaved === 'string' ? data.lastSaved : null,
    writtenAt: typeof data.writtenAt === 'string' ? data.writtenAt : null,
    writtenBy: data.writtenBy === 'room' || data.writtenBy === 'outside' ? data.writtenBy : null,
    saveError: typeof data.saveError === 'string' ? data.saveError : null,
    storeError: typeof data.storeError === 'string' ? data.storeError : null,
    fileReadOnly: typeof data.fileReadOnly === 'string' ? data.fileReadOnly : null,
    readOnly: data.readOnly === true,
    deleted: data.deleted === true
  };
}

/**
 * The room endpoint's view of the room of the notebook at `path`, whose room
 * name (`{format}:{type}:{fileId}`) is `roomName` when the provider knows it;
 * without it, the file id comes from the session endpoint.
 */
export async function fetchRoomInfoOf(
  path: string,
  roomName: string | null,
  settings: ServerConnection.ISettings
): Promise<IRoomInfo> {
  const fileId =
    (roomName === null ? null : fileIdOfRoom(roomName)) ?? (await requestFileId(path, settings));
  return fetchRoomInfo(fileId, settings);
}

async function requestJSON(
  url: string,
  init: RequestInit,
  settings: ServerConnection.ISettings
): Promise<unknown> {
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  if (!response.ok) {
    throw await ServerConnection.ResponseError.create(response);
  }
  return response.json();
}
