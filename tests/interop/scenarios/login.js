'use strict'
// Login with open authentication: every login succeeds and `username` becomes the user id.
const { connect, run, outcome, unique } = require('./lib')

run(async () => {
  const user = unique('alice').replace('/', '-')
  const named = await connect({ username: user })
  const anonymous = await connect({})
  const observer = await connect({ username: unique('observer').replace('/', '-') })
  const online = await outcome(observer.presence.getAll())
  return {
    user,
    states: [named, anonymous, observer].map((c) => c.getConnectionState()),
    loginData: [named.loginData ?? null, anonymous.loginData ?? null],
    online
  }
})
