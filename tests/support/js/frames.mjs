// Reference values for tests/unit/protocol/test_yutils.py, built with the real npm packages.
//
// Prints ONE JSON object to stdout. Every byte string is lowercase hex. The output is
// deterministic (fixed client IDs, no timestamps) so the Python side can compare it
// byte for byte with jupyter_ydjango.yutils.
//
//   node tests/support/js/frames.mjs
import * as Y from 'yjs'
import * as encoding from 'lib0/encoding'
import * as decoding from 'lib0/decoding'
import * as syncProtocol from 'y-protocols/sync.js'
import * as awarenessProtocol from 'y-protocols/awareness.js'
import * as authProtocol from 'y-protocols/auth.js'
import {
  messageSync,
  messageAwareness,
  messageAuth,
  messageQueryAwareness
} from 'y-websocket'

/** @param {Uint8Array} bytes */
const hex = bytes => Buffer.from(bytes).toString('hex')
/** @param {string} text */
const unhex = text => new Uint8Array(Buffer.from(text, 'hex'))

/** Build a byte string with a fresh lib0 encoder. */
const build = fn => {
  const encoder = encoding.createEncoder()
  fn(encoder)
  return encoding.toUint8Array(encoder)
}

/** A complete y-websocket message, exactly as y-websocket's provider builds it. */
const message = (type, fn) => build(encoder => {
  encoding.writeVarUint(encoder, type)
  fn(encoder)
})

const concat = arrays => {
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0))
  let pos = 0
  for (const a of arrays) {
    out.set(a, pos)
    pos += a.length
  }
  return out
}

const out = {
  versions: {},
  constants: {
    messageSync,
    messageAwareness,
    messageAuth,
    messageQueryAwareness,
    messageYjsSyncStep1: syncProtocol.messageYjsSyncStep1,
    messageYjsSyncStep2: syncProtocol.messageYjsSyncStep2,
    messageYjsUpdate: syncProtocol.messageYjsUpdate,
    messagePermissionDenied: authProtocol.messagePermissionDenied
  }
}

// --- primitives ------------------------------------------------------------------------

// Numbers above 2**31 are passed as decimal strings too, so nothing depends on how the
// Python side parses large JSON numbers.
const uints = [0, 1, 127, 128, 255, 256, 300, 16383, 16384, 2 ** 21 - 1, 2 ** 21,
  2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 35 + 3, 2 ** 53 - 1]
out.var_uint = uints.map(value => ({
  value: String(value),
  hex: hex(build(e => encoding.writeVarUint(e, value))),
  decoded: String(decoding.readVarUint(decoding.createDecoder(build(e => encoding.writeVarUint(e, value)))))
}))

const strings = ['', 'a', 'hello', 'héllo ✓', '😀👍🏽 family: 👨‍👩‍👧', 'x'.repeat(300),
  'é'.repeat(6000), '\u0000nul and \u007f del', '\ufeffbom kept']
out.var_string = strings.map(value => ({
  value,
  hex: hex(build(e => encoding.writeVarString(e, value))),
  decoded: decoding.readVarString(decoding.createDecoder(build(e => encoding.writeVarString(e, value))))
}))

const byteArrays = [new Uint8Array(0), new Uint8Array([0, 1, 2]),
  Uint8Array.from({ length: 200 }, (_, i) => (i * 7) & 0xff)]
out.var_byte_array = byteArrays.map(value => ({
  value: hex(value),
  hex: hex(build(e => encoding.writeVarUint8Array(e, value)))
}))

// --- a document -------------------------------------------------------------------------

const doc = new Y.Doc()
doc.clientID = 42
/** @type {Array<Uint8Array>} */
const updates = []
doc.on('update', update => updates.push(update))
const text = doc.getText('t')
const map = doc.getMap('m')
text.insert(0, 'hello world')
const svAfterFirst = Y.encodeStateVector(doc)
text.delete(5, 6) // leaves a delete set in every later full update
text.insert(5, ', héllo ✓ 😀')
doc.transact(() => {
  map.set('str', 'value')
  map.set('float', 1.5)
  map.set('bool', true)
  map.set('nothing', null)
  map.set('obj', { a: ['two', false], b: 'ü' })
})

// A second client edits concurrently, so the state vector has two entries.
const other = new Y.Doc()
other.clientID = 7
Y.applyUpdate(other, Y.encodeStateAsUpdate(doc))
other.getText('t').insert(0, '>> ')
other.getMap('m').set('by7', 'seven')
Y.applyUpdate(doc, Y.encodeStateAsUpdate(other, Y.encodeStateVector(doc)))

const stateVector = Y.encodeStateVector(doc)
const fullUpdate = Y.encodeStateAsUpdate(doc)
const emptyStateVector = Y.encodeStateVector(new Y.Doc())
const diffUpdate = Y.encodeStateAsUpdate(doc, svAfterFirst)

out.doc = {
  client_id: doc.clientID,
  text: text.toString(),
  map_json: JSON.stringify(map.toJSON()),
  state_vector: hex(stateVector),
  state_vector_decoded: Object.fromEntries(
    Array.from(Y.decodeStateVector(stateVector).entries()).map(([k, v]) => [String(k), v])
  ),
  empty_state_vector: hex(emptyStateVector),
  update: hex(fullUpdate),
  updates: updates.map(hex),
  sv_after_first: hex(svAfterFirst),
  diff_update: hex(diffUpdate),
  frames: {
    sync_step1: hex(message(messageSync, e => syncProtocol.writeSyncStep1(e, doc))),
    sync_step2: hex(message(messageSync, e => syncProtocol.writeSyncStep2(e, doc, emptyStateVector))),
    sync_step2_diff: hex(message(messageSync, e => syncProtocol.writeSyncStep2(e, doc, svAfterFirst))),
    updates: updates.map(u => hex(message(messageSync, e => syncProtocol.writeUpdate(e, u))))
  }
}

// The reply a real peer gives to our step 1, through y-protocols' own readSyncMessage.
{
  const peer = new Y.Doc()
  peer.clientID = 99
  const reply = build(e => {
    encoding.writeVarUint(e, messageSync)
    const request = unhex(out.doc.frames.sync_step1)
    const decoder = decoding.createDecoder(request)
    decoding.readVarUint(decoder) // messageSync
    syncProtocol.readSyncMessage(decoder, e, peer, null)
  })
  out.doc.empty_peer_reply = hex(reply)
}

// --- awareness --------------------------------------------------------------------------

const awareness = new awarenessProtocol.Awareness(doc) // clientID 42, clock 0, state {}
const localState = { user: { name: 'Ada ✓', color: '#ff0000' }, cursor: null, n: 3 }
awareness.setLocalState(localState) // clock 1
const localUpdate = awarenessProtocol.encodeAwarenessUpdate(awareness, [doc.clientID])

const remoteDoc = new Y.Doc()
remoteDoc.clientID = 2 ** 32 - 1
const remote = new awarenessProtocol.Awareness(remoteDoc)
remote.setLocalState({ user: { name: 'Bob 😀' } })
remote.setLocalState({ user: { name: 'Bob 😀' }, selection: [1, 2] })
remote.setLocalState({ user: { name: 'Bob 😀' }, selection: [3, 4] })
awarenessProtocol.applyAwarenessUpdate(
  awareness, awarenessProtocol.encodeAwarenessUpdate(remote, [remoteDoc.clientID]), 'test'
)
const bothUpdate = awarenessProtocol.encodeAwarenessUpdate(awareness, [doc.clientID, remoteDoc.clientID])

// what y-websocket sends on disconnect: the current clock with a null state
const disconnectUpdate = awarenessProtocol.encodeAwarenessUpdate(awareness, [doc.clientID], new Map())
// removeAwarenessStates bumps the clock and forgets the state
awarenessProtocol.removeAwarenessStates(awareness, [doc.clientID], 'test')
const removalUpdate = awarenessProtocol.encodeAwarenessUpdate(awareness, [doc.clientID])

const entries = update => {
  const decoder = decoding.createDecoder(update)
  const count = decoding.readVarUint(decoder)
  const result = []
  for (let i = 0; i < count; i++) {
    result.push({
      client_id: decoding.readVarUint(decoder),
      clock: decoding.readVarUint(decoder),
      state: decoding.readVarString(decoder)
    })
  }
  return result
}

const awarenessCase = update => ({
  update: hex(update),
  entries: entries(update),
  frame: hex(message(messageAwareness, e => encoding.writeVarUint8Array(e, update)))
})

out.awareness = {
  local_state_json: JSON.stringify(localState),
  local: awarenessCase(localUpdate),
  both: awarenessCase(bothUpdate),
  disconnect: awarenessCase(disconnectUpdate),
  removal: awarenessCase(removalUpdate)
}
awareness.destroy()
remote.destroy()

// --- auth and query awareness --------------------------------------------------------

out.auth = ['', 'no access', 'Permission denied: read-only ✓'].map(reason => ({
  reason,
  frame: hex(message(messageAuth, e => authProtocol.writePermissionDenied(e, reason)))
}))
out.query_awareness = hex(message(messageQueryAwareness, () => {}))

// --- several messages in one frame -------------------------------------------------------

// AUTH runs to the end of the frame, so it can only come last.
out.combined = {
  parts: [
    out.doc.frames.sync_step1,
    out.doc.frames.sync_step2,
    ...out.doc.frames.updates,
    out.query_awareness,
    out.awareness.both.frame,
    out.awareness.removal.frame,
    out.auth[2].frame
  ]
}
out.combined.frame = hex(concat(out.combined.parts.map(unhex)))

// --- what lib0 / y-protocols reject ----------------------------------------------------

const rejects = fn => {
  try {
    const value = fn()
    return { ok: typeof value === 'number' ? String(value) : value }
  } catch (error) {
    return { error: String(error && error.message ? error.message : error) }
  }
}
const malformed = [
  ['varUint', ''],
  ['varUint', '80'],
  ['varUint', 'ffff'],
  ['varUint', 'ffffffffffffffff7f'], // 63 bits
  ['varUint', 'ffffffffffffffffff01'],
  ['varString', '05616263'], // declares 5, has 3
  ['varString', '01'],
  ['varString', '01ff'],
  ['varString', '02c328'], // bad continuation byte
  ['varString', '03eda080'], // UTF-8 encoded surrogate
  ['varString', '02c0af'], // overlong
  ['varUint8Array', '0a0102'],
  ['varUint8Array', '80'],
  ['awareness', ''],
  ['awareness', '01'],
  ['awareness', '012a01'],
  ['awareness', '012a0103616263'], // state "abc" is not JSON
  ['awareness', '012a01034e614e'], // NaN
  ['awareness', '012a01027b7d012b'], // says 1 entry, but has 2
  ['awareness', '022a01027b7d']
]
out.lib0_decoding = malformed.map(([kind, input]) => {
  const data = unhex(input)
  let result
  if (kind === 'varUint') {
    result = rejects(() => decoding.readVarUint(decoding.createDecoder(data)))
  } else if (kind === 'varString') {
    result = rejects(() => decoding.readVarString(decoding.createDecoder(data)))
  } else if (kind === 'varUint8Array') {
    result = rejects(() => hex(decoding.readVarUint8Array(decoding.createDecoder(data))))
  } else {
    const target = new awarenessProtocol.Awareness(new Y.Doc())
    result = rejects(() => {
      awarenessProtocol.applyAwarenessUpdate(target, data, 'test')
      return 'applied'
    })
    target.destroy()
  }
  return { kind, input, ...result }
})

for (const name of ['yjs', 'y-protocols', 'lib0', 'y-websocket']) {
  const pkg = await import(`${name}/package.json`, { with: { type: 'json' } })
    .catch(() => null)
  out.versions[name] = pkg ? pkg.default.version : null
}

process.stdout.write(JSON.stringify(out) + '\n')
