/**
 * The room link: a URL that opens a notebook for a co-editor, in the
 * application the sender uses (JupyterLab or Notebook 7).
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

/**
 * The prefix of the workspace names of room links. JupyterLab's window
 * resolver names the workspaces it makes up `auto-` and one character (when
 * the requested workspace is already open in another window of the browser,
 * it goes to a random one of those 62 names and resets it); ours have a
 * longer suffix, so that the two never meet.
 */
export const LINK_WORKSPACE_PREFIX = 'auto-room-';

/**
 * Random characters in a link's workspace name: 62^12 (about 71 bits), so
 * that two copied links never name the same workspace.
 */
const WORKSPACE_ID_LENGTH = 12;
const WORKSPACE_ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

/**
 * A new workspace name for a room link: `auto-room-` and 12 random letters and
 * digits (JupyterLab accepts `[a-zA-Z0-9_-]+`).
 */
export function newLinkWorkspace(): string {
  const bytes = new Uint8Array(WORKSPACE_ID_LENGTH);
  crypto.getRandomValues(bytes);
  // 256 = 4 * 62 + 8: the bias towards the first 8 characters is negligible here.
  const id = Array.from(bytes, byte => WORKSPACE_ID_ALPHABET[byte % 62]).join('');
  return `${LINK_WORKSPACE_PREFIX}${id}`;
}

/**
 * The link that opens `path` (a server-relative path) in JupyterLab.
 *
 * It is `{origin}{baseUrl}lab/workspaces/{workspace}/tree/{path}`, with each
 * path segment URL-encoded and a new workspace name each time (see
 * `newLinkWorkspace`). JupyterLab keeps workspaces on the server, one set
 * per server: `lab/tree/{path}` would open the default workspace, which is
 * the sender's, with every tab the sender has open. A workspace the server
 * does not know yet opens empty but for the notebook of the link (JupyterLab
 * then saves it under that name), and no other workspace is touched: there
 * is no `reset` or `clone` in the link. Everyone who follows one copied
 * link shares its workspace; each "Copy room link" makes a new one.
 *
 * The base URL is JupyterLab's share URL, which is the base URL unless the
 * deployment configures one for sharing (JupyterHub does). The link never
 * carries the user's token: a co-editor signs in with their own.
 */
export function roomLink(path: string, workspace: string = newLinkWorkspace()): string {
  const base = new URL(PageConfig.getShareUrl(), window.location.href);
  const prefix = URLExt.join(base.pathname, 'lab', 'workspaces', workspace, 'tree');
  return `${base.origin}${prefix}/${encodePath(path)}`;
}

/**
 * The link that opens `path` in Notebook 7: `{origin}{baseUrl}notebooks/{path}`
 * (Notebook 7 has no workspaces: one notebook per page).
 */
export function notebookRoomLink(path: string): string {
  const base = new URL(PageConfig.getShareUrl(), window.location.href);
  return `${base.origin}${URLExt.join(base.pathname, 'notebooks')}/${encodePath(path)}`;
}

/**
 * Whether this page is Notebook 7 (rather than JupyterLab).
 */
export function isNotebook7(): boolean {
  return PageConfig.getOption('appName') === 'Jupyter Notebook';
}

function encodePath(path: string): string {
  const segments = path.split('/').filter(segment => segment !== '');
  return segments.map(encodeURIComponent).join('/');
}

/**
 * Copy the room link of `path` to the clipboard and say so. In Notebook 7 the
 * link opens Notebook 7 (see `notebookRoomLink`), elsewhere JupyterLab.
 *
 * Where the clipboard API is unavailable (a page served over plain HTTP from
 * another host is not a secure context) or refuses, show the link in a
 * dialog instead, selected, so that the user can copy it by hand.
 */
export async function copyRoomLink(path: string): Promise<string> {
  const link = isNotebook7() ? notebookRoomLink(path) : roomLink(path);
  if (await writeToClipboard(link)) {
    Notification.success('Room link copied', { autoClose: 3000 });
  } else {
    await showLinkDialog(link);
  }
  return link;
}

async function writeToClipboard(text: string): Promise<boolean> {
  if (!window.isSecureContext || !navigator.clipboard?.writeText) {
    return false;
  }
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (reason) {
    console.warn('jupyter-ydjango: the clipboard refused the room link', reason);
    return false;
  }
}

async function showLinkDialog(link: string): Promise<void> {
  await showDialog({
    title: 'Room link',
    body: new LinkBody(link),
    buttons: [Dialog.okButton({ label: 'Close' })],
    focusNodeSelector: '.ydjango-LinkDialog-input'
  });
}

/**
 * The dialog body: the link in a read-only field, selected when shown.
 */
class LinkBody extends Widget {
  constructor(link: string) {
    super();
    this.addClass('ydjango-LinkDialog');
    const hint = document.createElement('p');
    hint.textContent =
      'The clipboard is not available here. Copy this link and send it to a co-editor:';
    this._input = document.createElement('input');
    this._input.className = 'jp-mod-styled ydjango-LinkDialog-input';
    this._input.readOnly = true;
    this._input.value = link;
    this._input.addEventListener('focus', () => this._input.select());
    this.node.append(hint, this._input);
  }

  private _input: HTMLInputElement;
}
