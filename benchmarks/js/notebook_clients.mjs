// Notebook clients for benchmarks/compare.py: many real Yjs / y-websocket clients in one
// process, each holding a notebook room's document, typing into and watching one cell.
//
// It uses the packages the tests install in tests/support/js/node_modules (yjs, y-websocket, ws),
// loaded through require() from there so that this file needs no node_modules of its own.
//
// Protocol (as tests/support/js/driver.mjs): one JSON request per line on stdin, with an integer
// "rid" and a "cmd"; one JSON reply per line on stdout with the same "rid" and "ok".
//
// Times ("t", ms) are CLOCK_MONOTONIC (process.hrtime), the clock of Python's
// time.monotonic() too: comparable between driver processes and with the benchmark.

import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const here = path.dirname(fileURLToPath(import.meta.url))
const require = createRequire(path.join(here, '..', '..', 'tests', 'js', 'package.json'))
const Y = require('yjs')
const { WebsocketProvider } = require('y-websocket')
const WebSocket = require('ws')

const out = process.stdout.write.bind(process.stdout)
console.log = console.error
const send = (msg) => out(JSON.stringify(msg) + '\n')
const now = () => Number(process.hrtime.bigint()) / 1e6
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const yieldLoop = () => new Promise((resolve) => setImmediate(resolve))
process.setMaxListeners(0)

/** @type {Map<string, {doc: Y.Doc, provider: WebsocketProvider, times: number[], lengths: number[], watching: any, stopTyping?: boolean}>} */
const clients = new Map()

const client = (id) => {
  const c = clients.get(id)
  if (!c) throw new Error(`unknown client ${id}`)
  return c
}

/** The source YText of cell `index`. */
const source = (c, index) => {
  const cells = c.doc.getArray('cells')
  if (index >= cells.length) throw new Error(`no cell ${index} (${cells.length} cells)`)
  return cells.get(index).get('source')
}

const connectOne = (id, req) => new Promise((resolve, reject) => {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(req.url, req.room, doc, {
    WebSocketPolyfill: WebSocket,
    params: req.params ?? {},
    disableBc: true,
    resyncInterval: -1
  })
  const c = { doc, provider, times: [], lengths: [], watching: null }
  clients.set(id, c)
  const timer = setTimeout(() => reject(new Error(`${id}: not synced in ${req.timeout_ms} ms`)),
    req.timeout_ms ?? 60000)
  provider.on('connection-close', (event) => {
    if (!provider.synced) {
      clearTimeout(timer)
      provider.shouldConnect = false
      reject(new Error(`${id}: closed before sync (${event?.code} ${event?.reason})`))
    }
  })
  provider.once('sync', () => { clearTimeout(timer); resolve() })
})

const commands = {
  now () { return { t: now() } },

  async connect (req) {
    // connect req.ids, at most req.concurrency at a time; wait until each is synced
    const queue = [...req.ids]
    const started = now()
    const workers = Array.from({ length: req.concurrency ?? 10 }, async () => {
      while (queue.length) await connectOne(queue.shift(), req)
    })
    await Promise.all(workers)
    return { ms: now() - started }
  },

  watch (req) {
    // record (time, length) of every change of cell req.cell's source, per client
    for (const id of req.ids) {
      const c = client(id)
      const text = source(c, req.cell)
      if (c.watching) c.watching.text.unobserve(c.watching.fn)
      c.times = []
      c.lengths = []
      const fn = () => { c.times.push(now()); c.lengths.push(text.length) }
      text.observe(fn)
      c.watching = { text, fn }
    }
    return { t: now(), length: source(client(req.ids[0]), req.cell).length }
  },

  watched (req) {
    const result = {}
    for (const id of req.ids) {
      const c = client(id)
      result[id] = { t: c.times, length: c.lengths }
    }
    return { watched: result }
  },

  async wait_length (req) {
    // wait until every client's cell source has at least req.length characters
    const deadline = now() + (req.timeout_ms ?? 10000)
    for (;;) {
      const short = req.ids.filter((id) => source(client(id), req.cell).length < req.length)
      if (!short.length || now() > deadline) return { short }
      await sleep(5)
    }
  },

  async type (req) {
    // insert req.count characters at the end of the cell's source, one transaction (one
    // update) each: every req.interval_ms ms on a drift-free schedule, or, with 0, as fast as
    // possible, yielding to the event loop every req.yield_every characters; a stop_typing
    // request for the same client ends it early
    const c = client(req.id)
    const text = source(c, req.cell)
    const interval = req.interval_ms ?? 0
    const yieldEvery = req.yield_every ?? 1
    const t = []
    const lengths = []
    const start = now()
    c.stopTyping = false
    for (let i = 0; i < req.count; i++) {
      if (i > 0) {
        if (interval > 0) await sleep(Math.max(0, start + i * interval - now()))
        else if (i % yieldEvery === 0) await yieldLoop()
      }
      if (c.stopTyping) break
      t.push(now())
      text.insert(text.length, 'abcdefghijklmnopqrstuvwxyz'[i % 26])
      lengths.push(text.length)
    }
    return { t, length: lengths, slip_ms: interval > 0
      ? Math.max(...t.map((ti, i) => ti - (start + i * interval))) : 0 }
  },

  stop_typing (req) {
    client(req.id).stopTyping = true
    return {}
  },

  async close (req) {
    for (const id of req.ids ?? [...clients.keys()]) {
      const c = clients.get(id)
      if (!c) continue
      c.provider.destroy()
      c.doc.destroy()
      clients.delete(id)
    }
    await sleep(req.wait_ms ?? 200)
    return {}
  },

  usage () {
    const u = process.cpuUsage()
    return { cpu_s: (u.user + u.system) / 1e6, rss: process.memoryUsage().rss }
  }
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', async (line) => {
  if (!line.trim()) return
  const req = JSON.parse(line)
  try {
    const handler = commands[req.cmd]
    if (!handler) throw new Error(`unknown command ${req.cmd}`)
    send({ ...(await handler(req)), rid: req.rid, ok: true })
  } catch (err) {
    send({ rid: req.rid, ok: false, error: String(err?.stack ?? err) })
  }
})
rl.on('close', () => {
  for (const c of clients.values()) c.provider.destroy()
  process.exit(0)
})
