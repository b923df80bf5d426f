/**
 * The room link: a URL that opens a notebook in JupyterLab for a co-editor.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

/**
 * The link that opens `path` (a server-relative path) in JupyterLab.
 *
 * It is `{origin}{baseUrl}lab/tree/{path}` with each path segment
 * URL-encoded. The base URL is JupyterLab's share URL, which is the base URL
 * unless the deployment configures one for sharing (JupyterHub does). The
 * link never carries the user's token: a co-editor signs in with their own.
 */
export function roomLink(path: string): string {
  const base = new URL(PageConfig.getShareUrl(), window.location.href);
  const segments = path.split('/').filter(segment => segment !== '');
  const encoded = segments.map(encodeURIComponent).join('/');
  return `${base.origin}${URLExt.join(base.pathname, 'lab', 'tree')}/${encoded}`;
}

/**
 * Copy the room link of `path` to the clipboard and say so.
 *
 * Where the clipboard API is unavailable (a page served over plain HTTP from
 * another host is not a secure context) or refuses, show the link in a
 * dialog instead, selected, so that the user can copy it by hand.
 */
export async function copyRoomLink(path: string): Promise<string> {
  const link = roomLink(path);
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
