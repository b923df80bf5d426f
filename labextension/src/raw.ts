/**
 * The room's RAW messages (y-websocket message type 2, as jupyter-collaboration's
 * server sends its save replies): `varUint(2)` then `varString(JSON)`.
 *
 * jupyter-ydjango's rooms also say so when the document's file is deleted or
 * restored: `{"type": "file", "status": "deleted" | "restored", "path": …}`;
 * and when the user's role on the document changes:
 * `{"type": "role", "readOnly": boolean, "revoked"?: true, "expired"?: true}`
 * (revoked: the connection is closed next, with code 4403; expired: because
 * the grant that gave the role, such as a role link's, expired).
 */

/**
 * A room's notice about its file.
 */
export interface IFileNotice {
  type: 'file';
  status: 'deleted' | 'restored';
  path: string;
}

/**
 * A room's notice that the user's role on the document changed.
 */
export interface IRoleNotice {
  type: 'role';
  readOnly: boolean;
  revoked: boolean;
  expired: boolean;
}

const RAW = 2;

/**
 * The JSON object of a RAW message frame, or null for any other frame (other
 * message types, a RAW payload that is not JSON, a malformed frame).
 */
export function readRawJson(data: unknown): Record<string, unknown> | null {
  if (!(data instanceof ArrayBuffer)) {
    return null;
  }
  const bytes = new Uint8Array(data);
  if (bytes.length < 2 || bytes[0] !== RAW) {
    return null;
  }
  const [length, start] = readVarUint(bytes, 1);
  if (length === null || start + length > bytes.length) {
    return null;
  }
  try {
    const value: unknown = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(start, start + length))
    );
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

/**
 * The file notice in a frame, or null.
 */
export function readFileNotice(data: unknown): IFileNotice | null {
  const message = readRawJson(data);
  if (
    message === null ||
    message.type !== 'file' ||
    (message.status !== 'deleted' && message.status !== 'restored')
  ) {
    return null;
  }
  return {
    type: 'file',
    status: message.status,
    path: typeof message.path === 'string' ? message.path : ''
  };
}

/**
 * The role notice in a frame, or null.
 */
export function readRoleNotice(data: unknown): IRoleNotice | null {
  const message = readRawJson(data);
  if (message === null || message.type !== 'role' || typeof message.readOnly !== 'boolean') {
    return null;
  }
  return {
    type: 'role',
    readOnly: message.readOnly,
    revoked: message.revoked === true,
    expired: message.expired === true
  };
}

/**
 * lib0's varUint at `pos`: `[value, position after it]`, value null when the
 * frame ends first or the number is too long.
 */
function readVarUint(bytes: Uint8Array, pos: number): [number | null, number] {
  let value = 0;
  let shift = 1;
  while (pos < bytes.length) {
    const byte = bytes[pos++];
    value += (byte & 0x7f) * shift;
    if (byte < 0x80) {
      return [value, pos];
    }
    shift *= 128;
    if (shift > 2 ** 49) {
      break;
    }
  }
  return [null, pos];
}
