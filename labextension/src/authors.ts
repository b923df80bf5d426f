/**
 * Who changed what: beside the stock timeline slider, the names of those who
 * made the changes of the point the slider shows.
 *
 * The slider is jupyter-docprovider's (`statusBarTimeline`): a status bar item
 * `#jp-slider-status-bar`, at rank 4 on the left, into which its React widget
 * renders an `input.jp-Slider` once the history button is clicked. Its value
 * is the index of a timestamp of `GET api/collaboration/timeline/{path}`, 0
 * being the oldest. This extension adds a status item of its own just after it
 * and never touches the slider's elements: it watches them (a mutation
 * observer for the slider coming and going, `input` events for its moves), and
 * reads the authors of each point from `GET api/ydjango/history/{path}`, whose
 * points are the timeline's, in the same order.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

export const AUTHORS_ID = 'jp-ydjango-timeline-authors';

/**
 * The stock slider's status item and its range input.
 */
const SLIDER_ITEM_ID = 'jp-slider-status-bar';
const SLIDER_SELECTOR = 'input.jp-Slider';

/**
 * An author of a point, as `api/ydjango/history` names them.
 */
export interface IAuthor {
  username: string;
  name: string;
  display_name: string;
}

/**
 * A point of a document's timeline and who made its changes.
 */
export interface IAuthoredPoint {
  timestamp: number;
  authors: IAuthor[];
}

/**
 * The points of the document at `path` (`documentId` is `{format}:{type}`),
 * oldest first.
 */
export async function fetchAuthoredPoints(
  path: string,
  documentId: string,
  settings: ServerConnection.ISettings
): Promise<IAuthoredPoint[]> {
  const [format, type] = documentId.split(':');
  const url =
    URLExt.join(settings.baseUrl, 'api/ydjango/history', URLExt.encodeParts(path)) +
    URLExt.objectToQueryString({ format, type });
  const response = await ServerConnection.makeRequest(url, { method: 'GET' }, settings);
  if (!response.ok) {
    throw await ServerConnection.ResponseError.create(response);
  }
  const data = (await response.json()) as { points?: IAuthoredPoint[] };
  return Array.isArray(data.points) ? data.points : [];
}

/**
 * The label of a point's authors.
 */
export function authorsLabel(point: IAuthoredPoint | undefined): string {
  if (point === undefined) {
    return '';
  }
  const names = point.authors.map(a => a.display_name || a.name || a.username);
  return names.length === 0 ? 'Changed by: nobody recorded' : `Changed by: ${names.join(', ')}`;
}

/**
 * The status item: active (shown by the status bar) while the slider shows a
 * point it knows the authors of.
 */
class AuthorsItem extends Widget {
  constructor(
    private readonly app: JupyterFrontEnd,
    private readonly settings: ServerConnection.ISettings
  ) {
    super();
    this.id = AUTHORS_ID;
    this.addClass('jp-StatusBar-TextItem');
    this.addClass('ydjango-TimelineAuthors');
  }

  /**
   * Whether the status bar shows the item.
   */
  get active(): boolean {
    return this._active;
  }

  /**
   * Emitted when `active` changes.
   */
  get activeChanged(): ISignal<this, void> {
    return this._activeChanged;
  }

  private setActive(active: boolean): void {
    if (active !== this._active) {
      this._active = active;
      this._activeChanged.emit();
    }
  }

  /**
   * Follow the slider: called whenever the slider's item changes.
   */
  follow(): void {
    const slider = document.querySelector<HTMLInputElement>(
      `#${SLIDER_ITEM_ID} ${SLIDER_SELECTOR}`
    );
    if (slider === this.slider) {
      if (slider !== null && slider.max !== this.max) {
        void this.load(); // the timeline was opened again, with more points
      }
      return;
    }
    this.slider?.removeEventListener('input', this.showPoint);
    this.slider = slider;
    this.points = [];
    if (slider === null) {
      this.node.textContent = '';
      this.setActive(false);
      return;
    }
    slider.addEventListener('input', this.showPoint);
    void this.load();
  }

  private async load(): Promise<void> {
    const slider = this.slider;
    const current = this.app.shell.currentWidget as
      | (Widget & { context?: { path: string; model: any } })
      | null;
    const context = current?.context;
    if (slider === null || !context) {
      return;
    }
    this.max = slider.max;
    const documentId = context.model?.sharedModel?.getState?.('document_id');
    if (typeof documentId !== 'string') {
      return;
    }
    try {
      const points = await fetchAuthoredPoints(context.path, documentId, this.settings);
      if (slider === this.slider) {
        this.points = points;
        this.showPoint();
      }
    } catch (error) {
      console.warn('jupyter-ydjango: no authors for the timeline', error);
    }
  }

  /**
   * Show the authors of the point the slider is at.
   */
  private readonly showPoint = (): void => {
    const slider = this.slider;
    if (slider === null || this.points.length === 0) {
      return;
    }
    // the slider's points are the timeline's when it was opened; ours may hold
    // more if edits came since: count from the oldest, as the slider does
    const point = this.points[Number(slider.value)];
    this.node.textContent = authorsLabel(point);
    this.node.title =
      point === undefined ? '' : `Point of ${new Date(point.timestamp * 1000).toLocaleString()}`;
    this.setActive(point !== undefined);
  };

  private slider: HTMLInputElement | null = null;
  private max = '';
  private points: IAuthoredPoint[] = [];
  private _active = false;
  private readonly _activeChanged = new Signal<this, void>(this);
}

/**
 * Add the authors item beside the stock slider.
 */
export function addTimelineAuthors(app: JupyterFrontEnd, statusBar: IStatusBar): void {
  const item = new AuthorsItem(app, app.serviceManager.serverSettings);
  statusBar.registerStatusItem(AUTHORS_ID, {
    item,
    align: 'left',
    rank: 5,
    isActive: () => item.active,
    activeStateChanged: item.activeChanged
  });
  const observer = new MutationObserver(() => item.follow());
  void app.restored.then(() => {
    // the slider's item is in the page once the status bar is; watch the
    // whole page until it is, then that item only
    const sliderItem = document.getElementById(SLIDER_ITEM_ID);
    observer.observe(sliderItem ?? document.body, {
      childList: true,
      subtree: true,
      attributes: true,
      attributeFilter: ['max']
    });
    item.follow();
  });
}
