/**
 * The collaborators panel lists everyone present, whenever it is opened.
 *
 * jupyter-collaboration-ui's collaborators panel builds its list from the
 * global awareness's `change` events, and the React body that shows the list
 * subscribes to them only when it first renders, that is when the panel is
 * first shown. Someone who joins where others sit idle receives their states as
 * soon as the awareness room's websocket opens, before the panel is shown; the
 * renewals idle people send every 15 s are `update`s, not `change`s (nothing
 * in them changed). So the panel stayed empty, seen in Chromium, while the
 * awareness held everyone, until somebody moved.
 *
 * Each time the panel is shown, once its list has rendered, this emits one
 * `change` that adds, updates and removes nothing: the panel rebuilds its list
 * from the states the awareness holds. y-websocket sends on `update` only, so
 * nothing goes to the server.
 */

import { IAwareness } from '@jupyter/ydoc';
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Message, MessageLoop } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

/**
 * The id of jupyter-collaboration-ui's side panel (its `rtcPanel` plugin).
 */
export const COLLABORATION_PANEL_ID = 'jp-collaboration-panel';

/**
 * The element the panel's list renders into.
 */
const LIST_SELECTOR = '.jp-CollaboratorsList';

/**
 * How long to wait for the list to render after the panel is shown, in ms.
 */
const RENDER_TIMEOUT_MS = 5000;

/**
 * Refresh the collaborators panel from `awareness` whenever it is shown.
 */
export async function refreshCollaboratorsPanel(
  app: JupyterFrontEnd,
  awareness: IAwareness
): Promise<void> {
  await app.restored;
  let panel: Widget | undefined;
  for (const widget of app.shell.widgets('left')) {
    if (widget.id === COLLABORATION_PANEL_ID) {
      panel = widget;
    }
  }
  if (!panel) {
    return; // no collaborators panel in this frontend
  }
  const shown = panel;
  MessageLoop.installMessageHook(shown, (_: unknown, msg: Message) => {
    if (msg.type === 'after-show') {
      whenListRendered(shown, () => announceStates(awareness));
    }
    return true;
  });
  if (shown.isVisible) {
    whenListRendered(shown, () => announceStates(awareness));
  }
}

/**
 * Call `done` once the panel's list is in the page (its React body renders it
 * after the panel is shown), or give up after `RENDER_TIMEOUT_MS`.
 */
function whenListRendered(panel: Widget, done: () => void): void {
  const started = performance.now();
  const check = (): void => {
    if (panel.isDisposed) {
      return;
    }
    if (panel.node.querySelector(LIST_SELECTOR)) {
      // the body subscribed while rendering; let React commit the rest first
      setTimeout(done, 0);
    } else if (performance.now() - started < RENDER_TIMEOUT_MS) {
      requestAnimationFrame(check);
    }
  };
  requestAnimationFrame(check);
}

/**
 * A `change` of nothing: the listeners of `change` read the states again.
 */
function announceStates(awareness: IAwareness): void {
  awareness.emit('change', [{ added: [], updated: [], removed: [] }, 'local']);
}
