/**
 * The room status item: room state, people in the room, last save. JupyterLab
 * shows one in its status bar (for the current notebook); Notebook 7, which has
 * no status bar, one in each notebook's toolbar.
 *
 * The status bar's element has the id `ydjango-status`; every item has the
 * class `ydjango-RoomStatus` and carries what it shows as
 * `data-state`, `data-people`, `data-last-saved` (the room's last save,
 * ISO-8601, or empty), `data-written-at` and `data-written-by` (when the file
 * was last written and by whom, `room` or `outside`, or empty while unknown)
 * and, when the server reports them, `data-save-error` and `data-store-error`
 * (why the room's changes cannot be stored in its database now: they are kept
 * and retried; the text then reads "… · changes not stored yet").
 *
 * The text reads e.g. "synced · 2 people · saved 12 s ago", "… · changed on
 * disk 3 min ago" (written by something other than the room), or has no time
 * at all while nobody knows when the file was written.
 */
import { Widget } from '@lumino/widgets';

import type { IRoomStatus, RoomMonitor } from './monitor';

export const STATUS_ID = 'ydjango-status';

/**
 * How often the item refreshes itself ("saved 12 s ago" ages), in ms.
 */
const TICK_INTERVAL = 1000;

export class RoomStatusItem extends Widget {
  /**
   * @param options.id the element's id (the status bar's item has
   *   `ydjango-status`; toolbar items have none).
   */
  constructor(options: { id?: string } = {}) {
    super();
    if (options.id) {
      this.id = options.id;
    }
    this.addClass('ydjango-RoomStatus');
    this.addClass('jp-StatusBar-TextItem');
    this._dot = document.createElement('span');
    this._dot.className = 'ydjango-RoomStatus-dot';
    this._text = document.createElement('span');
    this._text.className = 'ydjango-RoomStatus-text';
    this.node.append(this._dot, this._text);
    this._render();
  }

  /**
   * The monitor of the notebook shown, or null when no notebook is current.
   * The item does not own it.
   */
  get monitor(): RoomMonitor | null {
    return this._monitor;
  }
  set monitor(monitor: RoomMonitor | null) {
    if (monitor === this._monitor) {
      return;
    }
    this._monitor?.changed.disconnect(this._render, this);
    this._monitor = monitor;
    monitor?.changed.connect(this._render, this);
    this._render();
  }

  dispose(): void {
    this._stopTicking();
    this.monitor = null;
    super.dispose();
  }

  protected onAfterAttach(): void {
    this._timer = window.setInterval(() => {
      this._monitor?.refresh();
      this._render();
    }, TICK_INTERVAL);
  }

  protected onBeforeDetach(): void {
    this._stopTicking();
  }

  private _stopTicking(): void {
    if (this._timer !== undefined) {
      window.clearInterval(this._timer);
      this._timer = undefined;
    }
  }

  private _render(): void {
    const monitor = this._monitor;
    if (monitor === null || monitor.isDisposed) {
      this._show(null);
      return;
    }
    this._show(monitor.status);
  }

  private _show(status: IRoomStatus | null): void {
    const data = this.node.dataset;
    if (status === null) {
      delete data.state;
      delete data.people;
      delete data.lastSaved;
      delete data.writtenAt;
      delete data.writtenBy;
      delete data.saveError;
      delete data.storeError;
      this._text.textContent = '';
      this.node.title = '';
      return;
    }
    const now = Date.now();
    data.state = status.state;
    data.people = String(status.people);
    data.lastSaved = status.lastSaved?.toISOString() ?? '';
    data.writtenAt = status.writtenAt?.toISOString() ?? '';
    data.writtenBy = status.writtenBy ?? '';
    if (status.saveError === null) {
      delete data.saveError;
    } else {
      data.saveError = status.saveError;
    }
    if (status.storeError === null) {
      delete data.storeError;
    } else {
      data.storeError = status.storeError;
    }
    const parts = [status.state, formatPeople(status.people)];
    const written = formatWritten(status, now);
    if (written !== null) {
      parts.push(written);
    }
    this._text.textContent = parts.join(' · ');
    this.node.title = describe(status);
  }

  private _dot: HTMLSpanElement;
  private _monitor: RoomMonitor | null = null;
  private _text: HTMLSpanElement;
  private _timer: number | undefined = undefined;
}

/**
 * "12 s ago", "3 min ago", "2 h ago", "4 d ago"; "just now" under a second
 * and for times slightly in the future (clock skew between server and
 * browser).
 */
export function formatAge(milliseconds: number): string {
  const seconds = Math.floor(milliseconds / 1000);
  if (seconds < 1) {
    return 'just now';
  }
  if (seconds < 60) {
    return `${seconds} s ago`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ago`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 24) {
    return `${hours} h ago`;
  }
  return `${Math.floor(hours / 24)} d ago`;
}

/**
 * The last-written part of the text, or null when there is nothing to say
 * (a deleted file, or no write known).
 */
export function formatWritten(status: IRoomStatus, now: number): string | null {
  if (status.state === 'deleted') {
    return null;
  }
  if (status.saveError !== null) {
    return 'save failed';
  }
  if (status.storeError !== null) {
    return 'changes not stored yet';
  }
  if (status.writtenAt === null) {
    return null;
  }
  const age = formatAge(now - status.writtenAt.getTime());
  return status.writtenBy === 'outside' ? `changed on disk ${age}` : `saved ${age}`;
}

function formatPeople(people: number): string {
  return people === 1 ? '1 person' : `${people} people`;
}

function describe(status: IRoomStatus): string {
  const lines = [`Room: ${status.state}`];
  if (status.state === 'read-only') {
    lines.push(
      status.fileReadOnly !== null
        ? `Nobody can change this notebook: ${status.fileReadOnly} (the server cannot write it)`
        : 'You can read this notebook but not change it (read-only access to the room)'
    );
  }
  if (status.state === 'deleted') {
    lines.push(
      'The file was deleted: the room no longer saves it. Its last content is kept on the ' +
        'server, where an administrator can restore it.'
    );
  }
  lines.push(`People in the room: ${status.people}`);
  if (status.connections !== null) {
    lines.push(`Connections on the server: ${status.connections}`);
  }
  if (status.writtenAt) {
    const who = status.writtenBy === 'outside' ? 'outside the room' : 'by the room';
    lines.push(`File last written ${who}: ${status.writtenAt.toLocaleString()}`);
  }
  if (status.lastSaved) {
    lines.push(`Last saved by the room: ${status.lastSaved.toLocaleString()}`);
  }
  if (status.saveError !== null) {
    lines.push(`Last save failed: ${status.saveError}`);
  }
  if (status.storeError !== null) {
    lines.push(
      `The server cannot store the changes in its database now (${status.storeError}); ` +
        'it keeps them and tries again. Keep the notebook open.'
    );
  }
  if (status.fileId !== null) {
    lines.push(`File id: ${status.fileId}`);
  }
  return lines.join('\n');
}
