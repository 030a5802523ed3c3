'use strict'
// Merge strategies on a write conflict: REMOTE_WINS (the default) adopts the server's data,
// LOCAL_WINS (client option `mergeStrategy` or `record.setMergeStrategy`) re-sends the local data,
// and a custom strategy is called with both sides and its result is written. Clients and server
// must agree on the data. (After a LOCAL_WINS merge the official client may keep a stale version
// locally: it applies the late VERSION_EXISTS reply's version; the reference does the same.)
const { connect, run, outcome, unique, sleep, merge, waitFor } = require('./lib')

const same = (x, y) => JSON.stringify(x) === JSON.stringify(y)
const union = (local, localVersion, remote, remoteVersion, done) => done(null, { ...remote, ...local })

run(async () => {
  const observer = await connect()

  // Both clients write the record in the same tick; wait until both and the server agree.
  async function conflict (clientA, clientB, configure = () => {}) {
    const name = unique('merge')
    const ra = clientA.record.getRecord(name)
    const rb = clientB.record.getRecord(name)
    await Promise.all([ra.whenReady(), rb.whenReady()])
    configure(ra, rb, name)
    await sleep(50)
    ra.set({ fromA: true })
    rb.set({ fromB: true })
    await waitFor(`agreement on ${name}`, () => ra.version > 0 && same(ra.get(), rb.get()))
      .catch((error) => { throw new Error(`${error.message}: a=${JSON.stringify([ra.version, ra.get()])} b=${JSON.stringify([rb.version, rb.get()])}`) })
    await sleep(150) // a merge write still in flight would show up here
    const server = await outcome(observer.record.snapshot(name))
    const head = await outcome(observer.record.head(name))
    return { a: [ra.version, ra.get()], b: [rb.version, rb.get()], server: server.ok ?? server, head: head.ok ?? head }
  }

  const a = await connect()
  const b = await connect()
  const bLocal = await connect({}, { mergeStrategy: merge.LOCAL_WINS })

  return {
    remoteWinsDefault: await conflict(a, b),
    localWinsOption: await conflict(a, bLocal),
    localWinsPerRecord: await conflict(a, b, (ra, rb) => rb.setMergeStrategy(merge.LOCAL_WINS)),
    localWinsByName: await conflict(a, b, (ra, rb, name) => b.record.setMergeStrategy(name, merge.LOCAL_WINS)),
    custom: await conflict(a, b, (ra, rb) => { ra.setMergeStrategy(union); rb.setMergeStrategy(union) })
  }
})
