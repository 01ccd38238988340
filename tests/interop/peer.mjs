#!/usr/bin/env node
// Wicket interop test peer: an independent yamux implementation (@libp2p/yamux 8.x) speaking raw
// yamux frames over plain TCP on loopback. Prints one JSON object per line on stdout.
// The command protocol is documented in README.md next to this file.
import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'
import { once } from 'node:events'
import { format, parseArgs } from 'node:util'
import { yamux } from '@libp2p/yamux'
// Not in @libp2p/tcp's exports map: import by path (see README.md).
import { toMultiaddrConnection } from './node_modules/@libp2p/tcp/dist/src/socket-to-conn.js'

// @libp2p/yamux 8 and @libp2p/utils call Promise.withResolvers() (Node >= 22) for pings and
// drains; without it every ping throws (and the keepalive swallows the error). Node 20 lacks it.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const KIB = 1024
const MIB = 1024 * KIB
const CHUNK = 64 * KIB
const EXIT_OK = 0
const EXIT_FAILED = 1
const EXIT_TIMEOUT = 2
const EXIT_ERROR = 3
const EXIT_USAGE = 64

const MAGIC_HEADER_LEN = { 'RST!': 4, SINK: 12, OPEN: 16, PING: 4, GOAW: 4 }

// ---------------------------------------------------------------------------------------------
// output, logging, process lifetime

function emit (obj) {
  // stdout is a pipe: writes are synchronous on Linux, so nothing is lost on process.exit().
  process.stdout.write(JSON.stringify(obj) + '\n')
}

const DEBUG = process.env.WICKET_PEER_DEBUG === '1'

function makeLogger (name) {
  const write = DEBUG
    ? (...args) => { process.stderr.write(`[${name}] ${format(...args)}\n`) }
    : () => {}
  const log = (...args) => { write(...args) }
  log.error = (fmt, ...args) => { write(`ERROR ${fmt}`, ...args) }
  log.trace = (...args) => { write(...args) }
  log.enabled = DEBUG
  log.newScope = (scope) => makeLogger(`${name}:${scope}`)
  return log
}

function fail (code, message) {
  emit({ event: 'error', error: message })
  process.exit(code)
}

process.on('uncaughtException', (err) => { fail(EXIT_ERROR, `uncaught: ${err?.stack ?? err}`) })
process.on('unhandledRejection', (err) => { fail(EXIT_ERROR, `unhandled rejection: ${err?.stack ?? err}`) })

const sha256hex = (hash) => hash.digest('hex')
const errMsg = (err) => (err == null ? undefined : `${err.name ?? 'Error'}: ${err.message ?? err}`)
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms) })

/** Resolve when the stream may take more data (the library's onDrain() is one-shot in 8.0.3). */
function waitDrain (stream) {
  if (!stream.writableNeedsDrain) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
    }
    const onDrain = () => { cleanup(); resolve() }
    const onClose = (evt) => { cleanup(); reject(evt.error ?? new Error('stream closed while waiting for drain')) }
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
  })
}

/** Send `size` pseudo-random bytes, honouring back-pressure; returns the SHA-256 hex digest. */
async function sendRandom (stream, size, prefix) {
  const hash = createHash('sha256')
  if (prefix != null && prefix.byteLength > 0) {
    if (!stream.send(prefix)) await waitDrain(stream)
  }
  let left = size
  while (left > 0) {
    const buf = randomBytes(Math.min(CHUNK, left))
    hash.update(buf)
    left -= buf.byteLength
    if (!stream.send(buf)) await waitDrain(stream)
  }
  return sha256hex(hash)
}

/**
 * Collect what the remote sends on an outbound stream until its FIN (resolves), a reset (rejects)
 * or a transport close without FIN (rejects).
 *
 * Quirk: for a Data frame carrying FIN, 8.0.3 dispatches 'remoteCloseWrite' BEFORE the frame's
 * payload 'message' (same tick), so completion is deferred with setImmediate.
 */
function collect (stream, { keep = false } = {}) {
  const hash = createHash('sha256')
  const chunks = []
  let bytes = 0
  let firstByte
  const firstBytePromise = new Promise((resolve) => { firstByte = resolve })
  const done = new Promise((resolve, reject) => {
    let fin = false
    stream.addEventListener('message', (evt) => {
      const buf = evt.data.subarray()
      hash.update(buf)
      bytes += buf.byteLength
      if (keep) chunks.push(buf)
      firstByte()
    })
    stream.addEventListener('remoteCloseWrite', () => {
      fin = true
      setImmediate(() => resolve({ bytes, sha256: sha256hex(hash), data: keep ? Buffer.concat(chunks) : undefined }))
    })
    stream.addEventListener('close', (evt) => {
      if (evt.error != null) {
        const err = evt.error
        err.local = evt.local
        reject(err)
      } else if (!fin) {
        reject(new Error('connection closed before the remote FIN'))
      }
    })
  })
  done.catch(() => {})
  return { done, firstByte: firstBytePromise, get bytes () { return bytes } }
}

// ---------------------------------------------------------------------------------------------
// the peer: one TCP connection, one yamux muxer

class Peer {
  constructor (opts) {
    this.opts = opts
    this.failures = []
    this.results = []
    this.inbound = new Set()
    this.pings = []
    this.pingRequests = 0
    this.remoteGoAway = undefined
  }

  fail (what) {
    this.failures.push(what)
  }

  attach (socket, direction) {
    socket.setNoDelay(true)
    this.socket = socket
    this.maConn = toMultiaddrConnection({
      socket,
      direction,
      log: makeLogger(`tcp:${direction}`),
      inactivityTimeout: this.opts.timeoutMs
    })
    const keepalive = this.opts.keepaliveMs > 0
    const maxWindow = this.opts.maxWindow
    this.muxer = yamux({
      enableKeepAlive: keepalive,
      keepAliveInterval: keepalive ? this.opts.keepaliveMs : 30_000,
      maxInboundStreams: 4096,
      maxOutboundStreams: 4096,
      streamOptions: {
        // must stay 256 KiB: a larger initial window is assumed by this library's sender too,
        // so it would overrun a spec-following peer before the first WindowUpdate.
        initialStreamWindowSize: 256 * KIB,
        maxStreamWindowSize: maxWindow,
        // a paused (back-pressured) echo stream buffers up to a whole window: never abort on it
        maxReadBufferLength: Math.max(2 * maxWindow, 64 * MIB),
        inactivityTimeout: this.opts.timeoutMs
      }
    })().createStreamMuxer(this.maConn)
    const muxer = this.muxer

    // observe what the library does not expose as events
    const origPing = muxer.ping.bind(muxer)
    muxer.ping = async (options) => {
      const rtt = await origPing(options)
      this.pings.push(rtt)
      emit({ event: 'ping', rtt_ms: rtt })
      return rtt
    }
    const origHandlePing = muxer.handlePing.bind(muxer)
    muxer.handlePing = (header) => {
      if (header.flag === 1) {
        this.pingRequests++
        emit({ event: 'ping_request', value: header.length })
      }
      origHandlePing(header)
    }
    const origGoAway = muxer.handleGoAway.bind(muxer)
    muxer.handleGoAway = (code) => {
      this.remoteGoAway = code
      emit({ event: 'goaway', direction: 'received', code })
      origGoAway(code)
      // 8.0.3 ends every stream on any GoAway; end the TCP connection too
      setImmediate(() => { this.closeTransport() })
    }
    const origAbort = muxer.abort.bind(muxer)
    muxer.abort = (err) => {
      if (muxer.status === 'open') {
        emit({ event: 'muxer_error', error: errMsg(err) })
        if (this.remoteGoAway === undefined) this.fail(`muxer aborted: ${errMsg(err)}`)
      }
      origAbort(err)
    }

    this.closed = new Promise((resolve) => {
      this.maConn.addEventListener('close', (evt) => {
        emit({ event: 'closed', error: errMsg(evt.error) })
        resolve()
      }, { once: true })
    })

    muxer.addEventListener('stream', (evt) => {
      const handler = new InboundHandler(this, evt.detail)
      this.inbound.add(handler)
      handler.done.then(() => { this.inbound.delete(handler) })
    })
  }

  record (result) {
    this.results.push(result)
    emit(result)
    if (result.ok === false) this.fail(`stream ${result.id} (${result.mode}): ${result.error ?? 'failed'}`)
  }

  async closeTransport () {
    try {
      await Promise.race([this.maConn.close(), sleep(2000)])
    } catch {}
    if (!this.socket.destroyed) this.socket.destroy()
  }

  /** Graceful end: FIN every stream, GoAway(0), close TCP. */
  async shutdown () {
    if (this.muxer.status === 'open') {
      emit({ event: 'goaway', direction: 'sent', code: 0 })
      try {
        await Promise.race([this.muxer.close(), sleep(5000)])
      } catch (err) {
        emit({ event: 'warning', warning: `muxer close: ${errMsg(err)}` })
      }
    }
    await this.closeTransport()
  }

  async waitInboundIdle () {
    while (this.inbound.size > 0) {
      await Promise.all([...this.inbound].map((h) => h.done))
    }
  }

  // --- outbound stream jobs (client mode, and OPEN on either side) ----------------------------

  /** Send `size` random bytes + FIN, read the echo to the remote FIN, compare SHA-256. */
  async runEchoStream (size, mode = 'echo') {
    const started = Date.now()
    let stream
    const result = { event: 'stream', id: undefined, direction: 'outbound', mode, bytes_sent: size }
    try {
      stream = await this.muxer.createStream()
      result.id = stream.streamId
      const rx = collect(stream)
      const sent = await sendRandom(stream, size)
      result.sha256_sent = sent
      if (mode === 'open') emit({ event: 'opened', id: stream.streamId, bytes: size, sha256: sent })
      await stream.close()
      const got = await rx.done
      result.bytes_received = got.bytes
      result.sha256_received = got.sha256
      result.result = 'closed'
      result.ok = got.bytes === size && got.sha256 === sent
      if (!result.ok) result.error = 'echo mismatch'
    } catch (err) {
      result.result = err?.local === false ? 'reset' : 'error'
      result.ok = false
      result.error = errMsg(err)
    }
    result.ms = Date.now() - started
    this.record(result)
    return result
  }

  /** Send data, wait for the first echo byte, then reset the stream (RST) mid-transfer. */
  async runResetStream (size) {
    const result = { event: 'stream', id: undefined, direction: 'outbound', mode: 'reset' }
    try {
      const stream = await this.muxer.createStream()
      result.id = stream.streamId
      const rx = collect(stream)
      const first = Math.max(1, Math.min(size, CHUNK))
      await sendRandom(stream, first)
      await Promise.race([rx.firstByte, rx.done, sleep(10_000).then(() => { throw new Error('no echo before reset') })])
      stream.abort(new Error('interop: reset mid-transfer'))
      result.bytes_sent = first
      result.bytes_received = rx.bytes
      result.result = 'reset_sent'
      result.ok = true
    } catch (err) {
      result.result = 'error'
      result.ok = false
      result.error = errMsg(err)
    }
    this.record(result)
    return result
  }

  /** Send "RST!" + data: the remote must reset the stream. */
  async runExpectReset () {
    const result = { event: 'stream', id: undefined, direction: 'outbound', mode: 'expect_reset' }
    try {
      const stream = await this.muxer.createStream()
      result.id = stream.streamId
      const rx = collect(stream)
      await sendRandom(stream, KIB, Buffer.from('RST!', 'latin1'))
      await Promise.race([rx.done, sleep(10_000)])
      result.result = 'no_reset'
      result.ok = false
      result.error = 'remote did not reset the stream'
    } catch (err) {
      result.result = err?.local === false ? 'reset' : 'error'
      result.ok = err?.local === false
      if (!result.ok) result.error = errMsg(err)
    }
    this.record(result)
    return result
  }

  /** "SINK" + u64 size + size bytes; the remote answers the 32-byte SHA-256 and FIN. */
  async runSink (size) {
    const result = { event: 'stream', id: undefined, direction: 'outbound', mode: 'sink', bytes_sent: size }
    try {
      const stream = await this.muxer.createStream()
      result.id = stream.streamId
      const rx = collect(stream, { keep: true })
      const header = Buffer.alloc(12)
      header.write('SINK', 0, 'latin1')
      header.writeBigUInt64BE(BigInt(size), 4)
      const sent = await sendRandom(stream, size, header)
      await stream.close()
      const got = await rx.done
      result.sha256_sent = sent
      result.sha256_received = got.data.toString('hex')
      result.result = 'closed'
      result.ok = result.sha256_received === sent
      if (!result.ok) result.error = 'sink digest mismatch'
    } catch (err) {
      result.result = err?.local === false ? 'reset' : 'error'
      result.ok = false
      result.error = errMsg(err)
    }
    this.record(result)
    return result
  }

  /** "OPEN" + u32 count + u64 size: the remote opens `count` echo streams towards us. */
  async runOpenControl (count, size) {
    const result = { event: 'stream', id: undefined, direction: 'outbound', mode: 'open_control' }
    try {
      const stream = await this.muxer.createStream()
      result.id = stream.streamId
      const rx = collect(stream, { keep: true })
      const header = Buffer.alloc(16)
      header.write('OPEN', 0, 'latin1')
      header.writeUInt32BE(count, 4)
      header.writeBigUInt64BE(BigInt(size), 8)
      stream.send(header)
      await stream.close()
      const got = await rx.done
      const reply = JSON.parse(got.data.toString('utf8'))
      result.reply = reply
      result.result = 'closed'
      result.ok = reply.ok === true && reply.streams.length === count
      if (!result.ok) result.error = 'remote reported OPEN failure'
    } catch (err) {
      result.result = 'error'
      result.ok = false
      result.error = errMsg(err)
    }
    this.record(result)
    return result
  }

  async runPings (count) {
    for (let i = 0; i < count; i++) {
      try {
        await this.muxer.ping({ signal: AbortSignal.timeout(10_000) })
      } catch (err) {
        emit({ event: 'ping_error', error: errMsg(err) })
        this.fail(`ping: ${errMsg(err)}`)
      }
      await sleep(20)
    }
  }

  summary (extra = {}) {
    const counts = {}
    for (const r of this.results) {
      const key = `${r.mode}:${r.result}`
      counts[key] = (counts[key] ?? 0) + 1
    }
    return {
      event: 'summary',
      ok: this.failures.length === 0,
      failures: this.failures,
      results: counts,
      pings: this.pings.length,
      ping_requests_answered: this.pingRequests,
      ...extra
    }
  }
}

// ---------------------------------------------------------------------------------------------
// inbound streams: echo / RST! / SINK / OPEN / PING / GOAW (selected by the first bytes)

class InboundHandler {
  constructor (peer, stream) {
    this.peer = peer
    this.stream = stream
    this.id = stream.streamId
    this.mode = null
    this.head = Buffer.alloc(0)
    this.bytesIn = 0
    this.bytesOut = 0
    this.hashIn = createHash('sha256')
    this.remoteFin = false
    this.paused = false
    this.closingWrite = false
    this.error = undefined
    this.extra = {}
    this.done = new Promise((resolve) => { this.resolveDone = resolve })
    emit({ event: 'stream_opened', id: this.id, direction: 'inbound' })
    stream.addEventListener('message', (evt) => { this.onMessage(evt.data.subarray()) })
    stream.addEventListener('remoteCloseWrite', () => {
      this.remoteFin = true
      // payload of a Data+FIN frame is dispatched after this event: look again later
      setImmediate(() => { this.maybeFinish() })
    })
    stream.addEventListener('close', (evt) => { this.onClose(evt) })
  }

  onMessage (buf) {
    this.bytesIn += buf.byteLength
    this.hashIn.update(buf)
    if (this.mode === null) {
      this.head = Buffer.concat([this.head, buf])
      this.classify(false)
      return
    }
    this.onPayload(buf)
  }

  /** Pick the mode once enough header bytes are in; `atEof` = the remote already sent FIN. */
  classify (atEof) {
    const head = this.head
    if (head.byteLength < 4 && !atEof) return
    const magic = head.subarray(0, 4).toString('latin1')
    const need = head.byteLength >= 4 ? (MAGIC_HEADER_LEN[magic] ?? 0) : 0
    if (head.byteLength < need) {
      if (atEof) {
        this.mode = 'truncated'
        this.setError(`truncated ${magic} header (${head.byteLength} bytes)`)
        this.closeWrite()
      }
      return
    }
    const rest = head.subarray(need)
    this.head = Buffer.alloc(0)
    switch (need === 0 ? 'echo' : magic) {
      case 'echo':
        this.mode = 'echo'
        this.onPayload(rest)
        break
      case 'RST!':
        this.mode = 'reset'
        // after the current frame is handled (so the ACK window update goes out first)
        setImmediate(() => { this.stream.abort(new Error('RST! requested')) })
        break
      case 'SINK':
        this.mode = 'sink'
        this.sinkWant = Number(head.readBigUInt64BE(4))
        this.sinkGot = 0
        this.sinkHash = createHash('sha256')
        this.onPayload(rest)
        break
      case 'OPEN':
        this.mode = 'open_control'
        this.runControl(() => this.controlOpen(head.readUInt32BE(4), Number(head.readBigUInt64BE(8))))
        break
      case 'PING':
        this.mode = 'ping_control'
        this.runControl(() => this.controlPing())
        break
      case 'GOAW':
        this.mode = 'goaway_control'
        this.closeWrite()
        setImmediate(() => { this.peer.shutdown() })
        break
    }
  }

  onPayload (buf) {
    if (buf.byteLength === 0) return
    switch (this.mode) {
      case 'echo':
        this.echo(buf)
        break
      case 'sink': {
        const room = this.sinkWant - this.sinkGot
        if (buf.byteLength > room) {
          this.setError(`SINK got more than ${this.sinkWant} bytes`)
          buf = buf.subarray(0, room)
        }
        this.sinkHash.update(buf)
        this.sinkGot += buf.byteLength
        if (this.sinkGot === this.sinkWant && this.sinkDigest === undefined) this.sinkReply()
        break
      }
      default:
        // control streams ignore anything after their header
        break
    }
  }

  send (buf) {
    this.bytesOut += buf.byteLength
    return this.stream.send(buf)
  }

  echo (buf) {
    let more
    try {
      more = this.send(buf)
    } catch (err) {
      this.setError(`echo write: ${errMsg(err)}`)
      return
    }
    if (!more && !this.paused) {
      // back-pressure: stop granting window until our writes drain. Deferred, because resume()
      // re-dispatches buffered data synchronously before it re-enables window updates.
      this.paused = true
      queueMicrotask(() => {
        try { this.stream.pause() } catch {}
        waitDrain(this.stream).then(() => {
          this.paused = false
          try { if (this.stream.readStatus === 'paused') this.stream.resume() } catch {}
          this.maybeFinish()
        }, () => {})
      })
    }
  }

  maybeFinish () {
    if (!this.remoteFin || this.closingWrite) return
    if (this.mode === null) {
      this.classify(true)
      if (this.mode === null) return
    }
    if (this.mode === 'echo') {
      if (this.paused || this.stream.readBufferLength > 0) return
      this.closeWrite()
    } else if (this.mode === 'sink' && this.sinkGot < this.sinkWant) {
      this.setError(`remote FIN after ${this.sinkGot}/${this.sinkWant} SINK bytes`)
      this.closeWrite()
    }
  }

  sinkReply () {
    this.sinkDigest = this.sinkHash.digest()
    this.extra.sink_bytes = this.sinkWant
    this.extra.sha256_payload = this.sinkDigest.toString('hex')
    try {
      this.send(this.sinkDigest)
    } catch (err) {
      this.setError(`sink reply: ${errMsg(err)}`)
      return
    }
    this.closeWrite()
  }

  closeWrite () {
    if (this.closingWrite) return
    this.closingWrite = true
    this.stream.close().catch((err) => {
      if (this.stream.status === 'open') this.setError(`close: ${errMsg(err)}`)
    })
  }

  runControl (fn) {
    setImmediate(() => {
      fn().then((reply) => {
        try {
          this.send(Buffer.from(JSON.stringify(reply) + '\n', 'utf8'))
        } catch (err) {
          this.setError(`control reply: ${errMsg(err)}`)
        }
        this.closeWrite()
      }, (err) => {
        this.setError(`control: ${errMsg(err)}`)
        this.closeWrite()
      })
    })
  }

  async controlOpen (count, size) {
    const results = await Promise.all(
      Array.from({ length: count }, () => this.peer.runEchoStream(size, 'open'))
    )
    const ok = results.every((r) => r.ok)
    if (!ok) this.setError('an OPEN stream failed')
    this.extra.open_count = count
    this.extra.open_bytes = size
    return { ok, streams: results.map((r) => ({ id: r.id, bytes: size, sha256: r.sha256_sent, ok: r.ok })) }
  }

  async controlPing () {
    const rtt = await this.peer.muxer.ping({ signal: AbortSignal.timeout(10_000) })
    this.extra.rtt_ms = rtt
    return { ok: true, rtt_ms: rtt }
  }

  setError (msg) {
    if (this.error === undefined) this.error = msg
  }

  onClose (evt) {
    let result
    if (evt.error != null) {
      result = evt.local ? 'reset_sent' : 'reset'
    } else if (this.remoteFin && this.closingWrite) {
      result = 'closed'
    } else {
      result = 'unfinished'
    }
    const ok = this.error === undefined && (this.mode !== 'reset' || result === 'reset_sent')
    const rec = {
      event: 'stream',
      id: this.id,
      direction: 'inbound',
      mode: this.mode ?? 'echo',
      result,
      ok,
      bytes_in: this.bytesIn,
      bytes_out: this.bytesOut,
      sha256_in: this.hashIn.digest('hex'),
      ...this.extra
    }
    if (this.error !== undefined) rec.error = this.error
    else if (evt.error != null && result === 'reset') rec.error = errMsg(evt.error)
    this.peer.record(rec)
    this.resolveDone()
  }
}

// ---------------------------------------------------------------------------------------------
// CLI

const USAGE = `usage:
  node peer.mjs server [--port 0] [common options]
  node peer.mjs client --port N [--streams K] [--bytes B] [--reset-streams R]
                       [--expect-reset-streams E] [--sink-bytes S]
                       [--open-streams M --open-bytes S] [--ping] [--pings N] [--stay]
common: [--host 127.0.0.1] [--timeout-ms 60000] [--keepalive-ms 1000 (0 = off)]
        [--max-window 16777216]`

function parseCli (argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      'timeout-ms': { type: 'string', default: '60000' },
      'keepalive-ms': { type: 'string', default: '1000' },
      'max-window': { type: 'string', default: String(16 * MIB) },
      streams: { type: 'string', default: '1' },
      bytes: { type: 'string', default: String(MIB) },
      'reset-streams': { type: 'string', default: '0' },
      'expect-reset-streams': { type: 'string', default: '0' },
      'sink-bytes': { type: 'string', default: '0' },
      'open-streams': { type: 'string', default: '0' },
      'open-bytes': { type: 'string', default: String(64 * KIB) },
      ping: { type: 'boolean', default: false },
      pings: { type: 'string', default: '3' },
      stay: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false }
    }
  })
  const int = (name) => {
    const v = Number(values[name])
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${name} must be a non-negative integer`)
    return v
  }
  const mode = positionals[0]
  if (values.help || positionals.length !== 1 || (mode !== 'server' && mode !== 'client')) {
    throw new Error('expected exactly one mode: server | client')
  }
  return {
    mode,
    host: values.host,
    port: int('port'),
    timeoutMs: int('timeout-ms'),
    keepaliveMs: int('keepalive-ms'),
    maxWindow: int('max-window'),
    streams: int('streams'),
    bytes: int('bytes'),
    resetStreams: int('reset-streams'),
    expectResetStreams: int('expect-reset-streams'),
    sinkBytes: int('sink-bytes'),
    openStreams: int('open-streams'),
    openBytes: int('open-bytes'),
    pings: values.ping ? Math.max(1, int('pings')) : 0,
    stay: values.stay
  }
}

async function runServer (opts) {
  const peer = new Peer(opts)
  const server = net.createServer()
  const connected = new Promise((resolve) => {
    server.on('connection', (socket) => {
      if (peer.socket !== undefined) {
        socket.destroy() // one connection per run
        return
      }
      server.close()
      resolve(socket)
    })
  })
  server.listen(opts.port, opts.host)
  await once(server, 'listening')
  emit({ event: 'listening', host: opts.host, port: server.address().port })
  const socket = await connected
  emit({ event: 'connected', remote_port: socket.remotePort })
  peer.attach(socket, 'inbound')
  await peer.closed
  await Promise.race([peer.waitInboundIdle(), sleep(1000)])
  return peer
}

async function runClient (opts) {
  if (opts.port === 0) throw new Error('client needs --port')
  const peer = new Peer(opts)
  const socket = net.connect({ host: opts.host, port: opts.port })
  await once(socket, 'connect')
  emit({ event: 'connected', local_port: socket.localPort })
  peer.attach(socket, 'outbound')
  const jobs = []
  for (let i = 0; i < opts.streams; i++) jobs.push(peer.runEchoStream(opts.bytes))
  for (let i = 0; i < opts.resetStreams; i++) jobs.push(peer.runResetStream(opts.bytes))
  for (let i = 0; i < opts.expectResetStreams; i++) jobs.push(peer.runExpectReset())
  if (opts.sinkBytes > 0) jobs.push(peer.runSink(opts.sinkBytes))
  if (opts.openStreams > 0) jobs.push(peer.runOpenControl(opts.openStreams, opts.openBytes))
  if (opts.pings > 0) jobs.push(peer.runPings(opts.pings))
  await Promise.all(jobs)
  emit({ event: 'jobs_done' })
  if (opts.stay) {
    await peer.closed
  } else {
    await peer.waitInboundIdle()
    await peer.shutdown()
    await peer.closed
  }
  await Promise.race([peer.waitInboundIdle(), sleep(1000)])
  return peer
}

async function main () {
  let opts
  try {
    opts = parseCli(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`${err.message}\n${USAGE}\n`)
    process.exit(EXIT_USAGE)
  }
  const timer = setTimeout(() => { fail(EXIT_TIMEOUT, `timeout after ${opts.timeoutMs} ms`) }, opts.timeoutMs)
  const started = Date.now()
  const peer = opts.mode === 'server' ? await runServer(opts) : await runClient(opts)
  clearTimeout(timer)
  const summary = peer.summary({ mode: opts.mode, ms: Date.now() - started })
  emit(summary)
  process.exit(summary.ok ? EXIT_OK : EXIT_FAILED)
}

main().catch((err) => { fail(EXIT_ERROR, err?.stack ?? String(err)) })
