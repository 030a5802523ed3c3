'use strict'
// Shared helpers for the interop scenarios.
//
// A scenario is `node scenarios/<name>.js <url> [args...]`. It drives the official client, then
// prints one JSON object on stdout (what it observed, plus every error the clients emitted) and
// exits 0; on any failure it prints the failure and exits 1. The Python tests assert on the JSON.

const { DeepstreamClient } = require('@deepstream/client')
const merge = require('@deepstream/client/dist/src/record/merge-strategy')

const url = process.argv[2]
const args = process.argv.slice(3)
const clients = []
const errors = []
const DEADLINE_MS = Number(process.env.SCENARIO_DEADLINE_MS || 20000)

if (!url) {
  console.error('usage: node <scenario>.js <host:port/path> [args...]')
  process.exit(2)
}

/** A logged-in client (to `target`, by default the scenario's url); `client.loginData` holds
 * what login resolved with. */
async function connect (auth = {}, options = {}, target = url) {
  // A short bulk-subscription interval only makes subscriptions reach the server sooner.
  const client = new DeepstreamClient(target, { subscriptionInterval: 10, ...options })
  const index = clients.length
  client.on('error', (error, event, topic) => {
    errors.push({ client: index, error: describe(error), event: String(event), topic })
  })
  clients.push(client)
  client.loginData = await client.login(auth)
  return client
}

function describe (value) {
  if (value && typeof value.message === 'string') return value.message
  return typeof value === 'string' ? value : JSON.stringify(value)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Poll `check` until it returns a truthy value; throw naming `what` after `timeout` ms. */
async function waitFor (what, check, timeout = 3000) {
  const end = Date.now() + timeout
  for (;;) {
    const value = check()
    if (value) return value
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

/** A callback that records its calls: `got.calls` (first arguments) and `got.all` (arg lists). */
function recorder () {
  const got = (...callArgs) => {
    got.calls.push(callArgs[0] === undefined ? null : callArgs[0])
    got.all.push(callArgs)
  }
  got.calls = []
  got.all = []
  got.count = (n, what = 'calls', timeout) => waitFor(`${n} ${what}`, () => got.calls.length >= n, timeout)
  return got
}

/** Settle: give batched subscriptions time to reach the server and be acknowledged. */
const settle = () => sleep(150)

/** Resolve with the outcome of a promise as data: `{ok: value}` or `{error: reason}`. */
async function outcome (promise) {
  try {
    return { ok: (await promise) ?? null }
  } catch (error) {
    return { error: describe(error) }
  }
}

/** Call-back style API -> `{error, value}` (never rejects). */
function callback (fn) {
  return new Promise((resolve) => fn((error, value) => resolve({ error: error ?? null, value })))
}

/** Print `line` for the test driving this scenario, then wait for it to answer on stdin. */
function handshake (line) {
  process.stdout.write(line + '\n')
  return new Promise((resolve) => {
    process.stdin.once('data', (chunk) => { process.stdin.pause(); resolve(String(chunk).trim()) })
  })
}

const unique = (prefix) => `${prefix}/${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`

function finish (code, body) {
  const text = JSON.stringify(body) + '\n'
  for (const client of clients) {
    if (client.getConnectionState() !== 'CLOSED') client.close()
  }
  process.stdout.write(text, () => process.exit(code))
}

/** Run the scenario: print `{...result, errors}` and exit 0, or print the failure and exit 1. */
function run (scenario) {
  const timer = setTimeout(() => finish(1, { failure: `scenario exceeded ${DEADLINE_MS} ms`, errors }), DEADLINE_MS)
  scenario()
    .then((result) => { clearTimeout(timer); finish(0, { ...result, errors }) })
    .catch((error) => {
      clearTimeout(timer)
      finish(1, { failure: describe(error), stack: error && error.stack, errors })
    })
}

module.exports = {
  DeepstreamClient, merge, url, args, errors, connect, sleep, waitFor, recorder, settle, outcome, callback, handshake, unique, run
}
