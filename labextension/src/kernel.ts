/**
 * No kernel for those who may not run one.
 *
 * On a server with the roles authorizer, only runners of a notebook may start
 * its kernel: for a viewer or an editor, JupyterLab's attempt to start the
 * notebook's kernel, as it opens, ends in a modal "Error Starting Kernel" (the
 * server answers 403), on every open. So before a notebook's session starts,
 * the user's role there is asked (`GET {base}api/ydjango/roles/{path}`: its
 * `role`); when it is not runner, the notebook opens with no kernel, and the
 * kernel picker offers none to start ("No Kernel"). Where the server has no
 * roles (every user is then a runner) or cannot answer, nothing changes.
 */
import type { NotebookPanel } from '@jupyterlab/notebook';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * The role whose holders may run a notebook's code.
 */
const RUNNER = 'runner';

/**
 * Make `panel`'s session ask for the user's role before it starts a kernel.
 *
 * The document manager calls `sessionContext.initialize()` once the file's
 * content is in, after the panel was made and added to the notebook tracker:
 * this wraps that one call (as `readonly.ts` wraps command execution, there
 * being no hook before it).
 */
export function startKernelsForRunnersOnly(
  panel: NotebookPanel,
  settings: ServerConnection.ISettings
): void {
  const session = panel.sessionContext;
  const initialize = session.initialize.bind(session);
  session.initialize = async (): Promise<boolean> => {
    const role = await roleOf(panel.context.localPath, settings);
    if (role !== undefined && role !== RUNNER) {
      session.kernelPreference = {
        ...session.kernelPreference,
        shouldStart: false,
        canStart: false
      };
    }
    return initialize();
  };
}

/**
 * The user's role on `path` (null: none), or undefined when the server does
 * not say.
 */
async function roleOf(
  path: string,
  settings: ServerConnection.ISettings
): Promise<string | null | undefined> {
  const url = URLExt.join(
    settings.baseUrl,
    'api/ydjango/roles',
    ...path.split('/').map(encodeURIComponent)
  );
  try {
    const response = await ServerConnection.makeRequest(url, {}, settings);
    if (!response.ok) {
      return undefined;
    }
    const body = (await response.json()) as { role?: unknown };
    return typeof body.role === 'string' || body.role === null ? body.role : undefined;
  } catch (reason) {
    console.debug('jupyter-ydjango: no role known for', path, reason);
    return undefined;
  }
}
