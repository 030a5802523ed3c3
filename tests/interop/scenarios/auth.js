'use strict'
// Logins through the official client (test_auth.py): what login resolves or rejects with, and
// the connection state after it. Without arguments, the users-file cases (a good password, a
// wrong one, an unknown user, a missing password, an empty auth object); with a JSON object
// argument {case: authData, ...}, those cases.
const { DeepstreamClient } = require('@deepstream/client')
const { run, url, args } = require('./lib')

// A rejection as data: an Error's message, or what login rejected with (the server's answer).
const describe = (value) => (value && typeof value.message === 'string') ? value.message : value

async function attempt (auth) {
  const client = new DeepstreamClient(url, { maxReconnectAttempts: 0 })
  const events = []
  client.on('error', (error, event) => events.push(String(event)))
  let result
  try {
    result = { ok: (await client.login(auth)) ?? null }
  } catch (error) {
    result = { error: describe(error) ?? null }
  }
  result.state = client.getConnectionState()
  result.events = events
  client.close()
  return result
}

const FILE_CASES = {
  good: { username: 'alice', password: 'alice-pw' },
  noClientData: { username: 'bob', password: 'bob-pw' },
  wrong: { username: 'alice', password: 'nope' },
  unknown: { username: 'mallory', password: 'x' },
  missing: { username: 'alice' },
  empty: {}
}

run(async () => {
  const cases = args[0] ? JSON.parse(args[0]) : FILE_CASES
  const out = {}
  for (const [name, auth] of Object.entries(cases)) out[name] = await attempt(auth)
  return out
})
