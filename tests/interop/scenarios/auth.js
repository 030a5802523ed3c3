'use strict'
// Logins through the official client against a users file (test_auth.py): what login resolves
// or rejects with for a good password, a wrong one, an unknown user, a missing password and
// an empty auth object; and the connection state after each.
const { DeepstreamClient } = require('@deepstream/client')
const { run, url } = require('./lib')

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

run(async () => ({
  good: await attempt({ username: 'alice', password: 'alice-pw' }),
  noClientData: await attempt({ username: 'bob', password: 'bob-pw' }),
  wrong: await attempt({ username: 'alice', password: 'nope' }),
  unknown: await attempt({ username: 'mallory', password: 'x' }),
  missing: await attempt({ username: 'alice' }),
  empty: await attempt({})
}))
