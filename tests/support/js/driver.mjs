// A long-running process holding many real Yjs / y-websocket clients, driven by the Python
// tests (see tests/support/yjs_client.py).
//
// Protocol: one JSON object per line on stdin (a request), one JSON object per line on stdout
// (a reply). Every request carries an integer "rid" and a "cmd"; the reply carries the same
// "rid" and either {"ok": true, ...result} or {"ok": false, "error": "...", ...details}.
// Nothing else is ever written to stdout; diagnostics go to stderr.
//
// Requests are handled concurrently: a slow command (wait_text, burst, connect, ...) never
// blocks the ones after it, and synchronous commands (insert, append, ...) are applied in the
// order in which they arrive.
//
// Timestamps ("t") are `performance.timeOrigin + performance.now()`, in ms (float), i.e.
// roughly Unix epoch milliseconds; use the `now` command to compare with them.

import * as Y from 'yjs'
import { YNotebook } from '@jupyter/ydoc'
import { WebsocketProvider } from 'y-websocket'
import { WebSocket as WebSocketPolyfill } from 'ws'
import { createInterface } from 'node:readline'
import { performance } from 'node:perf_hooks'

// --- stdout belongs to the protocol -------------------------------------------------------

const writeOut = process.stdout.write.bind(process.stdout)
// anything a library logs goes to stderr
console.log = console.error
console.info = console.error
console.debug = console.error

/** @param {...any} args */
const diag = (...args) => console.error('[driver]', ...args)

process.on('uncaughtException', (err) => diag('uncaught exception:', err))
process.on('unhandledRejection', (err) => diag('unhandled rejection:', err))
// every WebsocketProvider adds a process 'exit' listener
process.setMaxListeners(0)

/** @param {object} msg */
const send = (msg) => {
  let line
  try {
    line = JSON.stringify(msg)
  } catch (err) {
    line = JSON.stringify({ rid: msg.rid ?? null, ok: false, error: `unserializable reply: ${err}` })
  }
  writeOut(line + '\n')
}

const now = () => performance.timeOrigin + performance.now()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const yieldLoop = () => new Promise((resolve) => setImmediate(resolve))

class CommandError extends Error {
  /**
   * @param {string} message
   * @param {object} [details] extra fields merged into the ok:false reply
   */
  constructor (message, details = {}) {
    super(message)
    this.details = details
  }
}

/** JSON with sorted object keys, for deep equality of awareness states. */
const canonical = (value) => JSON.stringify(value, (_key, v) =>
  v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]]))
    : v
)

// --- clients ------------------------------------------------------------------------------

/**
 * @typedef {object} Client
 * @property {string} id
 * @property {Y.Doc} doc
 * @property {Y.Text} text
 * @property {WebsocketProvider} provider
 * @property {boolean} reconnect
 * @property {boolean} destroyed
 * @property {Array<object>} events
 * @property {Array<object> | null} watched
 * @property {Set<Function>} textWaiters called after every text change
 * @property {Set<Function>} awarenessWaiters called after every awareness change/update
 * @property {Set<Function>} eventWaiters called after every recorded event
 */

/** @type {Map<string, Client>} */
const clients = new Map()

/** @param {object} req */
const getClient = (req, { alive = true } = {}) => {
  if (typeof req.id !== 'string') throw new CommandError('missing string field "id"')
  const client = clients.get(req.id)
  if (!client) throw new CommandError(`unknown client "${req.id}"`)
  if (alive && client.destroyed) throw new CommandError(`client "${req.id}" is closed`)
  return client
}

/** @param {Client} client @param {object} event */
const record = (client, event) => {
  client.events.push({ t: now(), ...event })
  for (const fn of client.eventWaiters) fn()
}

/**
 * Resolve once `check()` returns a non-undefined value, re-checking whenever a callback in
 * `waiters` fires; reject with a CommandError after timeoutMs (details from `onTimeout()`).
 * @template T
 * @param {Set<Function>} waiters
 * @param {() => T | undefined} check
 * @param {number} timeoutMs
 * @param {() => {message: string, details?: object}} onTimeout
 * @return {Promise<T>}
 */
const waitFor = (waiters, check, timeoutMs, onTimeout) => new Promise((resolve, reject) => {
  let timer = null
  const done = () => {
    waiters.delete(poll)
    if (timer !== null) clearTimeout(timer)
  }
  const poll = () => {
    let result
    try {
      result = check()
    } catch (err) {
      done()
      reject(err)
      return
    }
    if (result !== undefined) {
      done()
      resolve(result)
    }
  }
  waiters.add(poll)
  timer = setTimeout(() => {
    done()
    const { message, details } = onTimeout()
    reject(new CommandError(message, details))
  }, Math.max(0, timeoutMs))
  poll()
})

/** @param {Client} client */
const closeEvents = (client) => client.events.filter((e) => e.type === 'connection-close')

/**
 * Wait for the provider to sync, or fail on the first close after `closesBefore` closes.
 * @param {Client} client
 * @param {number} closesBefore
 * @param {number} timeoutMs
 */
const waitSynced = (client, closesBefore, timeoutMs) => waitFor(
  client.eventWaiters,
  () => {
    if (client.provider.synced) return { synced: true }
    const closes = closeEvents(client)
    if (closes.length > closesBefore) {
      const close = closes[closesBefore]
      throw new CommandError(
        `connection closed before sync (code ${close.code}, reason ${JSON.stringify(close.reason)})`,
        { code: close.code, reason: close.reason, events: client.events }
      )
    }
    return undefined
  },
  timeoutMs,
  () => ({
    message: `not synced after ${timeoutMs} ms`,
    details: { events: client.events }
  })
)

/** @param {Client} client */
const clientInfo = (client) => ({
  id: client.id,
  client_id: client.doc.clientID,
  synced: client.provider.synced,
  connected: client.provider.wsconnected,
  should_connect: client.provider.shouldConnect,
  destroyed: client.destroyed,
  url: client.provider.url,
  // the local TCP port of the open websocket (ws' socket), to find the server process
  // that holds it; null while disconnected
  local_port: client.provider.ws?._socket?.localPort ?? null
})

/** Destroy a client's provider, awareness and doc; wait (bounded) for the socket to close. */
const destroyClient = async (client, waitMs = 1000) => {
  if (client.destroyed) return { socket_closed: true }
  client.destroyed = true
  const ws = client.provider.ws
  let closed = ws === null || ws.readyState === ws.CLOSED
  const closedPromise = closed || typeof ws.once !== 'function'
    ? Promise.resolve()
    : new Promise((resolve) => ws.once('close', () => { closed = true; resolve() }))
  // destroy() -> disconnect(): broadcasts the local awareness state as null, closes the socket
  client.provider.destroy()
  client.provider.awareness.destroy()
  client.doc.destroy()
  if (waitMs > 0) await Promise.race([closedPromise, sleep(waitMs)])
  return { socket_closed: closed }
}

/** @param {Client} client */
const notebookOf = (client) => {
  if (!client.notebook) throw new CommandError(`client "${client.id}" was not connected with "notebook"`)
  return client.notebook
}

// --- commands -----------------------------------------------------------------------------

/** @type {Record<string, (req: object) => any>} */
const commands = {
  async connect (req) {
    const { id, url, room } = req
    if (typeof id !== 'string' || typeof url !== 'string' || typeof room !== 'string') {
      throw new CommandError('connect needs string fields "id", "url" and "room"')
    }
    const existing = clients.get(id)
    if (existing && !existing.destroyed) throw new CommandError(`client "${id}" already exists`)
    const reconnect = req.reconnect ?? true
    const waitSync = req.waitSync ?? req.wait_sync ?? true
    const timeoutMs = req.timeout_ms ?? 10000

    // with "notebook": JupyterLab's own notebook model, whose doc the provider syncs (as the
    // frontend does); the nb_* commands act through it
    const notebook = req.notebook ? new YNotebook() : null
    const doc = notebook ? notebook.ydoc : new Y.Doc()
    /** @type {Client} */
    const client = {
      id,
      doc,
      // the Y.Text it types into: 't', or the one named by "text" (a text file's "source")
      text: doc.getText(req.text ?? 't'),
      provider: /** @type {any} */ (null),
      reconnect,
      destroyed: false,
      events: [],
      watched: null,
      textWaiters: new Set(),
      awarenessWaiters: new Set(),
      eventWaiters: new Set()
    }
    client.notebook = notebook
    clients.set(id, client)
    client.text.observe((event) => {
      if (client.watched !== null) {
        client.watched.push({ t: now(), length: client.text.length, local: event.transaction.local })
      }
      for (const fn of client.textWaiters) fn()
    })

    const provider = new WebsocketProvider(url, room, doc, {
      WebSocketPolyfill,
      params: req.params ?? {},
      disableBc: true,
      connect: false,
      resyncInterval: req.resync_interval ?? -1,
      maxBackoffTime: req.max_backoff_ms ?? 2500
    })
    client.provider = provider
    provider.on('status', ({ status }) => record(client, { type: 'status', status }))
    provider.on('sync', (synced) => record(client, { type: 'sync', synced }))
    provider.on('connection-error', (event) => record(client, {
      type: 'connection-error',
      message: event?.message ?? event?.error?.message ?? String(event)
    }))
    provider.on('connection-close', (event) => {
      if (!client.reconnect) provider.shouldConnect = false
      record(client, {
        type: 'connection-close',
        // event is null when the provider closed the socket itself (disconnect / destroy /
        // no-message watchdog); otherwise it is the CloseEvent of the `ws` library
        local: event == null,
        code: event?.code ?? null,
        reason: event?.reason ?? null,
        was_clean: event?.wasClean ?? null
      })
    })
    // emitted by y-websocket 3.x when shouldReconnect() says no (default: codes 4400-4499)
    provider.on('closed', ({ code, reason }) => record(client, { type: 'closed', code, reason }))
    const onAwareness = () => { for (const fn of client.awarenessWaiters) fn() }
    provider.awareness.on('change', onAwareness)
    provider.awareness.on('update', onAwareness)
    if (req.awareness !== undefined) provider.awareness.setLocalState(req.awareness)

    provider.connect()
    if (waitSync) {
      try {
        await waitSynced(client, 0, timeoutMs)
      } catch (err) {
        if (err instanceof CommandError) Object.assign(err.details, { id, client_id: doc.clientID })
        throw err
      }
    }
    return clientInfo(client)
  },

  async reconnect (req) {
    const client = getClient(req)
    const closesBefore = closeEvents(client).length
    client.provider.connect()
    if (req.wait_sync ?? true) await waitSynced(client, closesBefore, req.timeout_ms ?? 10000)
    return clientInfo(client)
  },

  disconnect (req) {
    // provider.disconnect(): awareness goodbye + close; the client can reconnect later
    const client = getClient(req)
    client.provider.disconnect()
    return clientInfo(client)
  },

  info (req) {
    return clientInfo(getClient(req, { alive: false }))
  },

  clients () {
    return { clients: [...clients.values()].map(clientInfo) }
  },

  insert (req) {
    const client = getClient(req)
    client.text.insert(req.index, String(req.text))
    return { length: client.text.length }
  },

  append (req) {
    const client = getClient(req)
    client.text.insert(client.text.length, String(req.text))
    return { length: client.text.length }
  },

  delete (req) {
    const client = getClient(req)
    client.text.delete(req.index, req.length)
    return { length: client.text.length }
  },

  text (req) {
    return { text: getClient(req, { alive: false }).text.toString() }
  },

  async wait_text (req) {
    const client = getClient(req)
    if (req.text == null && req.length == null) {
      throw new CommandError('wait_text needs "text" or "length"')
    }
    const started = now()
    const timeoutMs = req.timeout_ms ?? 5000
    const text = await waitFor(
      client.textWaiters,
      () => {
        const current = client.text.toString()
        if (req.text != null && current !== req.text) return undefined
        if (req.length != null && current.length !== req.length) return undefined
        return current
      },
      timeoutMs,
      () => {
        const current = client.text.toString()
        return {
          message: `timeout after ${timeoutMs} ms waiting for text; current text ${JSON.stringify(current)}`,
          details: { text: current, length: current.length }
        }
      }
    )
    return { text, elapsed_ms: now() - started }
  },

  nb_insert (req) {
    // type into cell `cell` at `index`, as the frontend's editor binding does
    const cell = notebookOf(getClient(req)).getCell(req.cell)
    if (!cell) throw new CommandError(`no cell ${req.cell}`)
    cell.updateSource(req.index, req.index, String(req.text))
    return { source: cell.getSource() }
  },

  nb_add_cell (req) {
    const notebook = notebookOf(getClient(req))
    const cell = notebook.insertCell(req.index ?? notebook.cells.length,
      { cell_type: req.cell_type ?? 'code', source: String(req.source ?? '') })
    return { id: cell.getId(), cells: notebook.cells.length }
  },

  nb_json (req) {
    // @jupyter/ydoc's reading of the client's document
    return { notebook: notebookOf(getClient(req, { alive: false })).toJSON() }
  },

  state (req) {
    const update = Y.encodeStateAsUpdate(getClient(req, { alive: false }).doc)
    return { update: Buffer.from(update).toString('base64') }
  },

  apply (req) {
    const client = getClient(req)
    Y.applyUpdate(client.doc, new Uint8Array(Buffer.from(req.update, 'base64')))
    return { length: client.text.length }
  },

  set_awareness (req) {
    const client = getClient(req)
    client.provider.awareness.setLocalState(req.state ?? null)
    return {}
  },

  awareness (req) {
    const client = getClient(req, { alive: false })
    return {
      client_id: client.doc.clientID,
      states: Object.fromEntries(client.provider.awareness.getStates())
    }
  },

  async wait_awareness (req) {
    const client = getClient(req)
    const remote = req.client_id
    if (!Number.isInteger(remote)) throw new CommandError('wait_awareness needs integer "client_id"')
    const present = req.present ?? true
    const wanted = req.state !== undefined ? canonical(req.state) : undefined
    const timeoutMs = req.timeout_ms ?? 5000
    const started = now()
    const states = () => client.provider.awareness.getStates()
    await waitFor(
      client.awarenessWaiters,
      () => {
        const has = states().has(remote)
        if (has !== present) return undefined
        if (present && wanted !== undefined && canonical(states().get(remote)) !== wanted) {
          return undefined
        }
        return true
      },
      timeoutMs,
      () => ({
        message: `timeout after ${timeoutMs} ms waiting for client ${remote} to be ` +
          (present ? 'present' : 'absent') + ' in the awareness states',
        details: { states: Object.fromEntries(states()) }
      })
    )
    return { elapsed_ms: now() - started, state: states().get(remote) ?? null }
  },

  async close (req) {
    const client = getClient(req, { alive: false })
    return await destroyClient(client, req.wait_ms ?? 1000)
  },

  async drop (req) {
    // lose the socket without any goodbye, as y-websocket's own watchdog closes it after 30 s
    // without a message: no awareness null state; the provider reconnects by itself and
    // announces its local awareness state again, with the same clock
    const client = getClient(req)
    const ws = client.provider.ws
    if (ws === null) return { dropped: false }
    const closesBefore = closeEvents(client).length
    ws.close()
    await waitFor(
      client.eventWaiters,
      () => closeEvents(client).length > closesBefore ? true : undefined,
      req.timeout_ms ?? 2000,
      () => ({ message: 'socket did not report closing' })
    )
    return { dropped: true }
  },

  async kill (req) {
    // drop the socket without any goodbye: no awareness null state, no close frame
    const client = getClient(req)
    client.reconnect = false
    client.provider.shouldConnect = false
    const ws = client.provider.ws
    if (ws === null) return { killed: false, event: null }
    const closesBefore = closeEvents(client).length
    if (typeof ws.terminate === 'function') {
      ws.terminate()
    } else {
      ws.close()
    }
    try {
      await waitFor(
        client.eventWaiters,
        () => closeEvents(client).length > closesBefore ? true : undefined,
        req.timeout_ms ?? 2000,
        () => ({ message: 'socket did not report closing' })
      )
    } catch (err) {
      diag(`kill ${client.id}:`, err.message)
    }
    return { killed: true, event: closeEvents(client)[closesBefore] ?? null }
  },

  events (req) {
    return { events: getClient(req, { alive: false }).events }
  },

  watch (req) {
    const client = getClient(req)
    client.watched = []
    return { t: now() }
  },

  watched (req) {
    return { watched: getClient(req, { alive: false }).watched ?? [] }
  },

  async burst (req) {
    const client = getClient(req)
    const count = req.count
    const interval = req.interval_ms ?? 0
    const chars = String(req.chars ?? 'abcdefghijklmnopqrstuvwxyz')
    if (!Number.isInteger(count) || count < 0) throw new CommandError('burst needs integer "count"')
    if (chars.length === 0) throw new CommandError('"chars" must not be empty')
    const sent = []
    const start = now()
    for (let i = 0; i < count; i++) {
      if (i > 0) {
        if (interval > 0) {
          // drift-free schedule: the i-th char at start + i * interval
          await sleep(Math.max(0, start + i * interval - now()))
        } else {
          await yieldLoop()
        }
      }
      if (client.destroyed) throw new CommandError('client closed during burst', { sent })
      const t = now()
      client.text.insert(client.text.length, chars[i % chars.length])
      sent.push({ t, length_after: client.text.length })
    }
    return { sent }
  },

  now () {
    return { t: now() }
  },

  async shutdown () {
    await shutdownAll()
    return {}
  }
}

// --- main loop ----------------------------------------------------------------------------

let shuttingDown = false

const shutdownAll = async () => {
  await Promise.all([...clients.values()].map((c) => destroyClient(c, 300).catch(diag)))
}

const exit = (code) => {
  // exit only after stdout has been flushed
  writeOut('', () => process.exit(code))
}

/** @param {string} line */
const handleLine = async (line) => {
  if (line.trim() === '') return
  let req
  try {
    req = JSON.parse(line)
  } catch (err) {
    send({ rid: null, ok: false, error: `invalid JSON: ${err.message}` })
    return
  }
  const rid = req?.rid ?? null
  try {
    if (req === null || typeof req !== 'object') throw new CommandError('request must be an object')
    if (!Number.isInteger(rid)) throw new CommandError('missing integer "rid"')
    const handler = Object.hasOwn(commands, req.cmd) ? commands[req.cmd] : undefined
    if (!handler) throw new CommandError(`unknown command ${JSON.stringify(req.cmd)}`)
    const result = await handler(req)
    send({ ...result, rid, ok: true })
  } catch (err) {
    const details = err instanceof CommandError ? err.details : { stack: err?.stack }
    send({ ...details, rid, ok: false, error: err?.message ?? String(err) })
  }
  if (req?.cmd === 'shutdown' && !shuttingDown) {
    shuttingDown = true
    exit(0)
  }
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => { handleLine(line) })
rl.on('close', async () => {
  // stdin closed without a shutdown command: clean up and leave
  if (shuttingDown) return
  shuttingDown = true
  await shutdownAll()
  exit(0)
})
diag(`ready (pid ${process.pid}, yjs clients via y-websocket)`)
