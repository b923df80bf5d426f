/**
 * A read-only room in the notebook's UI.
 *
 * The server drops a reader's changes (and answers with a y-protocols
 * "permission denied" message, which y-websocket only logs), so whatever a
 * reader changes would stay in the reader's own copy. JupyterLab 4.6 has no
 * read-only notebook: a file that is not writable gets a toolbar label and a
 * disabled Save, nothing more. What it has is read-only cells (`cell.readOnly`
 * makes the CodeMirror editor read-only: no typing, pasting or dropping, while
 * remote changes still show), `model.readOnly` (no replace in search, no
 * "unsaved changes" prompt on close) and commands as the way the UI changes a
 * notebook. So a read-only notebook here is:
 *
 * - `model.readOnly` and every cell read-only, cells added later included
 *   (markdown cells stay rendered);
 * - the commands that change the document (insert, delete, cut, paste, move,
 *   merge, split, change cell type, run, clear outputs, undo, redo) refused
 *   for it, whether they come from a key, a menu, a toolbar or the palette;
 * - the few edits that do not go through commands blocked where they happen:
 *   dropping cells (moving them by drag and drop), the cell type drop-down,
 *   the "click to add a cell" footer and the cell toolbar (both hidden);
 * - a "View only" label in the notebook toolbar (in place of JupyterLab's
 *   own "notebook is read-only", hidden meanwhile by the style sheet: the
 *   label says what the user can do in the room), the class `ydjango-mod-readOnly` on the panel and a short
 *   notification when the reader tries to change something.
 *
 * Viewing stays as it was: selecting and copying text and cells, moving
 * around, collapsing headings, hiding inputs and outputs.
 */
import { Notification } from '@jupyterlab/apputils';
import type { NotebookPanel } from '@jupyterlab/notebook';
import type { Contents } from '@jupyterlab/services';
import type { CommandRegistry } from '@lumino/commands';
import type { IDisposable } from '@lumino/disposable';
import type { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { Signal } from '@lumino/signaling';
import { PanelLayout, Widget } from '@lumino/widgets';

type Cell = NotebookPanel['content']['widgets'][number];

export const READ_ONLY_CLASS = 'ydjango-mod-readOnly';

/**
 * The class of a notebook panel whose user's role on it was revoked.
 */
export const REVOKED_CLASS = 'ydjango-mod-revoked';

/**
 * The name of JupyterLab's own toolbar item for a file that is not writable.
 */
const STOCK_LABEL_ITEM = 'read-only-indicator';

/**
 * The name of our toolbar item.
 */
const LABEL_ITEM = 'ydjango-read-only';

const WHY = 'You have read-only access to this room: changes you made would not reach anyone else.';

/**
 * The words of our toolbar label.
 */
export const LABEL_TEXT = 'View only';

/**
 * The commands that change a notebook's document, refused for a read-only
 * notebook.
 */
export const DOCUMENT_COMMANDS: ReadonlySet<string> = new Set([
  'notebook:change-cell-to-code',
  'notebook:change-cell-to-heading-1',
  'notebook:change-cell-to-heading-2',
  'notebook:change-cell-to-heading-3',
  'notebook:change-cell-to-heading-4',
  'notebook:change-cell-to-heading-5',
  'notebook:change-cell-to-heading-6',
  'notebook:change-cell-to-markdown',
  'notebook:change-cell-to-raw',
  'notebook:clear-all-cell-outputs',
  'notebook:clear-cell-output',
  'notebook:cut-cell',
  'notebook:cut-selected-text',
  'notebook:delete-cell',
  'notebook:duplicate-below',
  'notebook:insert-cell-above',
  'notebook:insert-cell-below',
  'notebook:insert-heading-above',
  'notebook:insert-heading-below',
  'notebook:merge-cell-above',
  'notebook:merge-cell-below',
  'notebook:merge-cells',
  'notebook:move-cell-down',
  'notebook:move-cell-up',
  'notebook:paste-and-replace-cell',
  'notebook:paste-cell-above',
  'notebook:paste-cell-below',
  'notebook:paste-text',
  'notebook:redo',
  'notebook:redo-cell-action',
  'notebook:replace-selection',
  'notebook:restart-and-run-to-selected',
  'notebook:restart-clear-output',
  'notebook:restart-run-all',
  'notebook:run-all-above',
  'notebook:run-all-below',
  'notebook:run-all-cells',
  'notebook:run-cell',
  'notebook:run-cell-and-insert-below',
  'notebook:run-cell-and-select-next',
  'notebook:run-in-console',
  'notebook:split-cell-at-cursor',
  'notebook:undo',
  'notebook:undo-cell-action',
  'cell-toolbar:delete',
  'toc:run-cells'
]);

/**
 * The read-only state of one notebook panel, and what it does to the panel.
 *
 * The notebook is read-only when the server says its room is (set
 * `roomReadOnly`) or when something else made its model read-only.
 */
export class ReadOnlyNotebook implements IDisposable {
  constructor(panel: NotebookPanel, contents: Contents.IManager) {
    this._panel = panel;
    this._contents = contents;
    const model = panel.context.model;
    this._modelReadOnly = model.readOnly;
    model.stateChanged.connect(this._onModelStateChanged, this);
    panel.content.modelChanged.connect(this._update, this);
    panel.disposed.connect(this.dispose, this);
    this._update();
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  get panel(): NotebookPanel {
    return this._panel;
  }

  /**
   * Whether the notebook is read-only in the UI now.
   */
  get readOnly(): boolean {
    return this._applied;
  }

  /**
   * Whether the server says the room is read-only for us; null while unknown.
   */
  get roomReadOnly(): boolean | null {
    return this._roomReadOnly;
  }
  set roomReadOnly(value: boolean | null) {
    if (value === this._roomReadOnly) {
      return;
    }
    const wasReadOnly = this._roomReadOnly;
    this._roomReadOnly = value;
    this._update();
    if (value === false && wasReadOnly === true) {
      this._madeWritable().catch(reason => {
        // Save stays disabled; the room still keeps (and autosaves) the user's edits.
        console.warn('jupyter-ydjango: cannot tell the notebook it is writable', reason);
      });
    }
  }

  /**
   * Tell the user why nothing happened.
   */
  refuse(what?: string): void {
    const name = this._panel.context.localPath.split('/').pop() ?? '';
    const message = what
      ? `${name} is read-only: "${what}" is not available. ${WHY}`
      : `${name} is read-only. ${WHY}`;
    Private.notify(message);
  }

  /**
   * The room became writable for the user (they were made editor): if the
   * file is writable for them now, JupyterLab's own read-only label, put in
   * the toolbar when the file was opened as not writable for them, goes (it
   * is never taken away otherwise), and so does the disabled Save.
   *
   * JupyterLab reads whether the file is writable from its contents model,
   * which the document's context takes when the file is opened, saved or
   * renamed, and nowhere else: for a collaborative document, from a "save"
   * of its path on the contents manager's `fileChanged`. So the file's model
   * is asked for again and told as such a save (which it is to every other
   * listener too: the file's newest model).
   */
  private async _madeWritable(): Promise<void> {
    const context = this._panel.context;
    if (context.contentsModel?.writable !== false) {
      return;
    }
    const contents = this._contents;
    const model = await contents.get(context.path, { content: false });
    if (model.writable && !this._panel.isDisposed) {
      Private.stockLabel(this._panel)?.dispose();
      const changed = contents.fileChanged as Signal<Contents.IManager, Contents.IChangedArgs>;
      changed.emit({ type: 'save', oldValue: null, newValue: model });
    }
  }

  /**
   * The user's role on the notebook was revoked: it is read-only and follows
   * the room no more; say so until the user dismisses it.
   */
  revoked(expired = false): void {
    const name = this._panel.context.localPath.split('/').pop() ?? '';
    this.roomReadOnly = true;
    this._panel.addClass(REVOKED_CLASS);
    const what = expired
      ? `Your access to ${name} has expired`
      : `Your access to ${name} was revoked by its owner`;
    Notification.error(
      `${what}: it no longer shows others' changes, and nothing you change in it is kept. ` +
        'Ask the owner for access to open it again.',
      { autoClose: false }
    );
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    if (!this._panel.isDisposed) {
      this._release();
    }
    Signal.clearData(this);
  }

  private _onModelStateChanged(
    _: unknown,
    change: { name: string; oldValue?: unknown; newValue?: unknown }
  ): void {
    if (change.name === 'readOnly' && !this._settingModel) {
      this._modelReadOnly = change.newValue === true;
      this._update();
    }
  }

  private _update(): void {
    if (this._isDisposed) {
      return;
    }
    const readOnly = this._roomReadOnly === true || this._modelReadOnly;
    if (readOnly === this._applied) {
      return;
    }
    if (readOnly) {
      this._apply();
    } else {
      this._release();
    }
  }

  private _apply(): void {
    const panel = this._panel;
    const notebook = panel.content;
    this._applied = true;
    panel.addClass(READ_ONLY_CLASS);
    this._setModelReadOnly(true);
    notebook.model?.cells.changed.connect(this._applyToCells, this);
    this._cells = notebook.model?.cells ?? null;
    this._applyToCells();

    // Moving cells by drag and drop, and dropping cells from elsewhere.
    notebook.node.addEventListener('lm-dragover', this._onDrag, true);
    notebook.node.addEventListener('lm-drop', this._onDrag, true);
    // Typing into a read-only editor: say why nothing happens.
    notebook.node.addEventListener('beforeinput', this._onBeforeInput, true);
    // The cell type drop-down changes the cell type without a command.
    panel.toolbar.node.addEventListener('change', this._onToolbarChange, true);

    this._label = Private.createLabel();
    if (!panel.toolbar.insertBefore('kernelName', LABEL_ITEM, this._label)) {
      panel.toolbar.addItem(LABEL_ITEM, this._label);
    }
  }

  private _release(): void {
    const panel = this._panel;
    const notebook = panel.content;
    this._applied = false;
    panel.removeClass(READ_ONLY_CLASS);
    this._cells?.changed.disconnect(this._applyToCells, this);
    this._cells = null;
    notebook.node.removeEventListener('lm-dragover', this._onDrag, true);
    notebook.node.removeEventListener('lm-drop', this._onDrag, true);
    notebook.node.removeEventListener('beforeinput', this._onBeforeInput, true);
    panel.toolbar.node.removeEventListener('change', this._onToolbarChange, true);
    this._label?.dispose();
    this._label = null;
    const showEditor = notebook.notebookConfig.showEditorForReadOnlyMarkdown ?? true;
    for (const cell of notebook.widgets) {
      // Back to what the cell's `editable` metadata says, and following it
      // again, as when the notebook created the cell.
      cell.loadEditableState();
      if (this._unsynced.has(cell)) {
        cell.syncEditable = true;
      }
      if ('showEditorForReadOnly' in cell) {
        (cell as { showEditorForReadOnly: boolean }).showEditorForReadOnly = showEditor;
      }
    }
    if (!this._modelReadOnly) {
      this._setModelReadOnly(false);
    }
  }

  /**
   * Make every cell read-only: run when applied and on each change of the
   * cell list (the notebook has made the new cells' widgets by then: it
   * connected to the list before us).
   */
  private _applyToCells(): void {
    for (const cell of this._panel.content.widgets) {
      // The notebook makes its cells save their read-only state into the
      // cell's `editable` metadata: a change of the document, which the
      // server would refuse. Not for this one.
      if (cell.syncEditable) {
        cell.syncEditable = false;
        this._unsynced.add(cell);
      }
      cell.readOnly = true;
      if ('showEditorForReadOnly' in cell) {
        const markdown = cell as unknown as { showEditorForReadOnly: boolean; rendered: boolean };
        markdown.showEditorForReadOnly = false;
        markdown.rendered = true;
      }
    }
  }

  private _setModelReadOnly(value: boolean): void {
    this._settingModel = true;
    try {
      this._panel.context.model.readOnly = value;
    } finally {
      this._settingModel = false;
    }
  }

  private _onDrag = (event: Event): void => {
    event.preventDefault();
    event.stopPropagation();
    (event as Event & { dropAction: string }).dropAction = 'none';
    if (event.type === 'lm-drop') {
      this.refuse();
    }
  };

  private _onBeforeInput = (event: Event): void => {
    const target = event.target as HTMLElement | null;
    if (target?.closest('.jp-Cell .cm-content')) {
      event.preventDefault();
      this.refuse();
    }
  };

  private _onToolbarChange = (event: Event): void => {
    const target = event.target;
    if (!(target instanceof HTMLSelectElement)) {
      return;
    }
    event.stopPropagation();
    const notebook = this._panel.content;
    const types = new Set(
      notebook.widgets
        .filter(cell => notebook.isSelectedOrActive(cell))
        .map(cell => cell.model.type)
    );
    target.value = types.size === 1 ? [...types][0] : '-';
    this.refuse('Change cell type');
  };

  private _applied = false;
  private _contents: Contents.IManager;
  private _cells: NonNullable<NotebookPanel['content']['model']>['cells'] | null = null;
  private _isDisposed = false;
  private _label: Widget | null = null;
  private _modelReadOnly: boolean;
  private _panel: NotebookPanel;
  private _roomReadOnly: boolean | null = null;
  private _settingModel = false;
  private _unsynced = new WeakSet<Cell>();
}

/**
 * Refuse the commands that change a document when they would act on a
 * read-only notebook. `target` gives the read-only state of the notebook a
 * command acts on: the notebook commands act on the current notebook.
 *
 * Lumino runs every command (key bindings, menus, toolbars, the palette)
 * through `CommandRegistry.execute`, which has no hook before a command
 * runs; this wraps it. Returns a disposable that unwraps it.
 */
export function refuseDocumentCommands(
  commands: CommandRegistry,
  target: (args: ReadonlyPartialJSONObject) => ReadOnlyNotebook | null
): IDisposable {
  const execute = commands.execute;
  let isDisposed = false;
  commands.execute = function (
    this: CommandRegistry,
    id: string,
    args: ReadonlyPartialJSONObject = {}
  ): Promise<any> {
    if (DOCUMENT_COMMANDS.has(id)) {
      const notebook = target(args);
      if (notebook?.readOnly) {
        notebook.refuse(commands.hasCommand(id) ? commands.label(id, args) || id : id);
        return Promise.resolve(undefined);
      }
    }
    return execute.call(this, id, args);
  };
  return {
    get isDisposed() {
      return isDisposed;
    },
    dispose() {
      if (!isDisposed) {
        isDisposed = true;
        commands.execute = execute;
      }
    }
  };
}

namespace Private {
  let noticeId: string | null = null;

  /**
   * One notification at a time: a refusal replaces the one still shown.
   */
  export function notify(message: string): void {
    const options = { autoClose: 5000 as const };
    const update = { id: noticeId ?? '', message, type: 'warning' as const, ...options };
    if (noticeId !== null && Notification.update(update)) {
      return;
    }
    noticeId = Notification.warning(message, options);
  }

  /**
   * JupyterLab's own label of a file that is not writable, if the panel has it.
   */
  export function stockLabel(panel: NotebookPanel): Widget | null {
    const index = Array.from(panel.toolbar.names()).indexOf(STOCK_LABEL_ITEM);
    return index < 0 ? null : ((panel.toolbar.layout as PanelLayout).widgets[index] ?? null);
  }

  export function createLabel(): Widget {
    const label = new Widget();
    label.addClass('ydjango-ReadOnlyLabel');
    const text = document.createElement('span');
    text.className = 'jp-ToolbarLabelComponent';
    text.textContent = LABEL_TEXT;
    text.title = WHY;
    label.node.append(text);
    return label;
  }
}
