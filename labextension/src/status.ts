/**
 * The status-bar item: room state, people in the room, last save.
 *
 * The element has the id `ydjango-status` and carries what it shows as
 * `data-state`, `data-people`, `data-last-saved` (ISO-8601, or empty) and,
 * when the server reports one, `data-save-error`.
 */
import { Widget } from '@lumino/widgets';

import type { IRoomStatus, RoomMonitor } from './monitor';

export const STATUS_ID = 'ydjango-status';

/**
 * How often the item refreshes itself ("saved 12 s ago" ages), in ms.
 */
const TICK_INTERVAL = 1000;

export class RoomStatusItem extends Widget {
  constructor() {
    super();
    this.id = STATUS_ID;
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
      delete data.saveError;
      this._text.textContent = '';
      this.node.title = '';
      return;
    }
    const now = Date.now();
    data.state = status.state;
    data.people = String(status.people);
    data.lastSaved = status.lastSaved?.toISOString() ?? '';
    if (status.saveError === null) {
      delete data.saveError;
    } else {
      data.saveError = status.saveError;
    }
    const saved =
      status.saveError !== null
        ? 'save failed'
        : status.lastSaved
          ? `saved ${formatAge(now - status.lastSaved.getTime())}`
          : 'not saved yet';
    this._text.textContent = `${status.state} · ${formatPeople(status.people)} · ${saved}`;
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

function formatPeople(people: number): string {
  return people === 1 ? '1 person' : `${people} people`;
}

function describe(status: IRoomStatus): string {
  const lines = [`Room: ${status.state}`];
  if (status.state === 'read-only') {
    lines.push('You can read this notebook but not change it (read-only access to the room)');
  }
  lines.push(`People in the room: ${status.people}`);
  if (status.connections !== null) {
    lines.push(`Connections on the server: ${status.connections}`);
  }
  if (status.lastSaved) {
    lines.push(`Last saved: ${status.lastSaved.toLocaleString()}`);
  }
  if (status.saveError !== null) {
    lines.push(`Last save failed: ${status.saveError}`);
  }
  if (status.fileId !== null) {
    lines.push(`File id: ${status.fileId}`);
  }
  return lines.join('\n');
}
