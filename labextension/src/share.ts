/**
 * The share dialog of a notebook: its room link, who has which role on it, and
 * role links.
 *
 * It is what the top bar's share button opens (in place of the stock dialog,
 * which shares the whole server). It lists the grants that cover the notebook
 * (`GET {base}api/ydjango/roles/{path}`: its own, and its folders'; `manage`
 * says whether the user may change them), lets the owner add a user or group with a role, change a role or remove it (`PUT`
 * and `DELETE` on the same URL), and make and revoke role links
 * (`{base}api/ydjango/links/{path}`; shown only where the server lets guests
 * in, and to those who may manage them). Everyone else sees the list only.
 * Each change is the server's to make: the dialog shows what the server then
 * lists, or why it refused.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { copyRoomLink } from './link';

const ROLES = ['viewer', 'editor', 'runner'] as const;
/** The subject of a role link's grant: its group. */
const LINK_GROUP = 'group:ydjango-link-';
const ROLE_LABELS: Record<string, string> = {
  viewer: 'Viewer (sees it live)',
  editor: 'Editor (edits it)',
  runner: 'Runner (edits it, runs its code)'
};
const LIFETIMES: [string, number][] = [
  ['1 day', 86400],
  ['7 days', 7 * 86400],
  ['30 days', 30 * 86400]
];

interface IGrant {
  subject: string;
  role: string;
  /** `"document"`, or the API path of the folder the grant is on. */
  on: string;
}

interface ILink {
  id: string;
  role: string;
  expires: string;
  revoked: string | null;
  opened: number;
}

/**
 * Open the share dialog of the notebook at `path` (a server-relative path).
 */
export async function openShareDialog(
  path: string,
  settings: ServerConnection.ISettings
): Promise<void> {
  const body = new ShareBody(path, settings);
  void body.refresh();
  await showDialog({
    title: `Share ${path.split('/').pop() ?? path}`,
    body,
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
}

class ShareBody extends Widget {
  constructor(path: string, settings: ServerConnection.ISettings) {
    super();
    this._path = path;
    this._settings = settings;
    this.addClass('ydjango-ShareDialog');

    const copy = button('Copy room link', 'ydjango-ShareDialog-copy', () => {
      void copyRoomLink(this._path);
    });
    const linkRow = row(copy, text('span', 'Opens the notebook, in its room, for whoever has access.'));

    this._grants = document.createElement('table');
    this._grants.className = 'ydjango-ShareDialog-grants';
    this._subject = document.createElement('input');
    this._subject.className = 'jp-mod-styled ydjango-ShareDialog-subject';
    this._subject.placeholder = 'user:NAME or group:NAME';
    this._newRole = roleSelect('viewer');
    this._add = button('Add', 'ydjango-ShareDialog-add', () => {
      const subject = this._subject.value.trim();
      if (subject) {
        void this._change('PUT', 'roles', { subject, role: this._newRole.value });
      }
    });
    this._addRow = row(this._subject, this._newRole, this._add);

    this._links = document.createElement('div');
    this._links.className = 'ydjango-ShareDialog-links';
    this._error = text('p', '');
    this._error.className = 'ydjango-ShareDialog-error';

    this.node.append(
      linkRow,
      text('h3', 'Who has access'),
      this._grants,
      this._addRow,
      this._links,
      this._error
    );
  }

  /**
   * Ask the server for the grants and links, and show them.
   */
  async refresh(): Promise<void> {
    const roles = await this._request('GET', 'roles');
    // (a role link's grant is shown with its link)
    const grants = (roles.ok ? ((roles.body.grants as IGrant[]) ?? []) : []).filter(
      grant => !grant.subject.startsWith(LINK_GROUP)
    );
    this._manages = roles.ok && roles.body.manage === true;
    // The links answer only those who manage roles, where guests may come in.
    const links = this._manages ? await this._request('GET', 'links') : null;
    this._showGrants(grants);
    this._addRow.style.display = this._manages ? '' : 'none';
    this._showLinks(links?.ok ? ((links.body.links as ILink[]) ?? []) : null);
    if (!roles.ok) {
      this._error.textContent = `The roles cannot be shown: ${roles.error}`;
    }
  }

  private _showGrants(grants: IGrant[]): void {
    this._grants.replaceChildren();
    if (grants.length === 0) {
      this._grants.append(
        tableRow([text('td', 'Nobody but the owner: add a user or a group below.')])
      );
    }
    for (const grant of grants) {
      const own = grant.on === 'document';
      const cells: HTMLElement[] = [
        text('td', grant.subject),
        text('td', own ? 'this notebook' : `folder ${grant.on || '/'}`)
      ];
      if (this._manages && own) {
        const select = roleSelect(grant.role);
        select.addEventListener('change', () => {
          void this._change('PUT', 'roles', { subject: grant.subject, role: select.value });
        });
        const remove = button('Remove', 'ydjango-ShareDialog-remove', () => {
          void this._change('DELETE', 'roles', { subject: grant.subject });
        });
        cells.push(cellOf(select), cellOf(remove));
      } else {
        cells.push(text('td', grant.role), text('td', ''));
      }
      const line = tableRow(cells);
      line.dataset.subject = grant.subject;
      line.dataset.role = grant.role;
      this._grants.append(line);
    }
  }

  private _showLinks(links: ILink[] | null): void {
    this._links.replaceChildren();
    if (links === null) {
      return;
    }
    const role = roleSelect('viewer');
    const lifetime = document.createElement('select');
    lifetime.className = 'jp-mod-styled';
    for (const [label, seconds] of LIFETIMES) {
      lifetime.append(new Option(`for ${label}`, String(seconds), false, seconds === 7 * 86400));
    }
    const make = button('Make link', 'ydjango-ShareDialog-make', async () => {
      const made = await this._request('POST', 'links', {
        role: role.value,
        expiresIn: Number(lifetime.value)
      });
      if (!made.ok) {
        this._error.textContent = made.error;
        return;
      }
      const url = new URL(
        URLExt.join(this._settings.baseUrl, 'ydjango/join', String(made.body.token)),
        window.location.href
      ).href;
      await this.refresh();
      const shown = document.createElement('input');
      shown.className = 'jp-mod-styled ydjango-ShareDialog-madeLink';
      shown.readOnly = true;
      shown.value = url;
      shown.addEventListener('focus', () => shown.select());
      const hint = text('p', 'Shown this once: whoever opens it gets the role as a guest.');
      this._links.append(hint, shown);
      shown.focus();
    });
    this._links.append(
      text('h3', 'Role links'),
      row(role, lifetime, make)
    );
    for (const link of links.filter(l => l.revoked === null)) {
      const revoke = button('Revoke', 'ydjango-ShareDialog-revoke', () => {
        void this._change('DELETE', 'links', { id: link.id });
      });
      const expires = new Date(link.expires).toLocaleString();
      const line = row(
        text('span', `${link.role}, until ${expires}, opened ${link.opened} times`),
        revoke
      );
      line.dataset.link = link.id;
      this._links.append(line);
    }
  }

  private async _change(method: string, api: 'roles' | 'links', body: object): Promise<void> {
    const answer = await this._request(method, api, body);
    this._error.textContent = answer.ok ? '' : answer.error;
    if (answer.ok && api === 'roles' && method === 'PUT') {
      this._subject.value = '';
    }
    await this.refresh();
    if (!answer.ok) {
      this._error.textContent = answer.error;
    }
  }

  private async _request(
    method: string,
    api: 'roles' | 'links',
    body?: object
  ): Promise<{ ok: boolean; body: Record<string, unknown>; error: string }> {
    const url = URLExt.join(
      this._settings.baseUrl,
      'api/ydjango',
      api,
      ...this._path.split('/').map(encodeURIComponent)
    );
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    try {
      const response = await ServerConnection.makeRequest(url, init, this._settings);
      const data = (await response.json().catch(() => ({}))) as Record<string, unknown>;
      const error = String(data.error ?? data.message ?? response.statusText);
      return { ok: response.ok, body: data, error };
    } catch (reason) {
      return { ok: false, body: {}, error: String(reason) };
    }
  }

  private _add: HTMLButtonElement;
  private _addRow: HTMLElement;
  private _error: HTMLElement;
  private _grants: HTMLTableElement;
  private _links: HTMLElement;
  private _manages = false;
  private _newRole: HTMLSelectElement;
  private _path: string;
  private _settings: ServerConnection.ISettings;
  private _subject: HTMLInputElement;
}

function text(tag: string, content: string): HTMLElement {
  const element = document.createElement(tag);
  element.textContent = content;
  return element;
}

function row(...children: HTMLElement[]): HTMLElement {
  const element = document.createElement('div');
  element.className = 'ydjango-ShareDialog-row';
  element.append(...children);
  return element;
}

function tableRow(cells: HTMLElement[]): HTMLTableRowElement {
  const element = document.createElement('tr');
  element.append(...cells);
  return element;
}

function cellOf(child: HTMLElement): HTMLElement {
  const cell = document.createElement('td');
  cell.append(child);
  return cell;
}

function button(label: string, className: string, onClick: () => void): HTMLButtonElement {
  const element = document.createElement('button');
  element.className = `jp-mod-styled jp-Button ${className}`;
  element.textContent = label;
  element.addEventListener('click', onClick);
  return element;
}

function roleSelect(selected: string): HTMLSelectElement {
  const select = document.createElement('select');
  select.className = 'jp-mod-styled ydjango-ShareDialog-role';
  for (const role of ROLES) {
    select.append(new Option(ROLE_LABELS[role], role, false, role === selected));
  }
  return select;
}
