// Starts reqlite (npm, 2.3.0), a JavaScript imitation of RethinkDB 2.0 used as a protocol
// stand-in in tests; it is not RethinkDB. Usage: node serve.js [PORT]  (0 or none: any free port)
// reqlite listens on every interface; listen() is pinned to 127.0.0.1 here, and the port it got
// is printed as one line: "reqlite stand-in listening on 127.0.0.1:PORT".
"use strict";
const net = require("net");

const wanted = parseInt(process.argv[2] || "0", 10);
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (_port, callback) {
  this.once("listening", () => {
    process.stdout.write(`reqlite stand-in listening on 127.0.0.1:${this.address().port}\n`);
  });
  return listen.call(this, wanted, "127.0.0.1", callback);
};

// reqlite evaluates a query as a chain of promises, so two queries in flight interleave, also
// between a replace function's read of a document and its write: RethinkDB's replace is atomic
// per document. Queries run here one at a time (each to its end before the next starts), so
// every write is atomic, as the connectors under test rely on.
const Query = require("reqlite/lib/query.js");
const runQuery = Query.prototype.run;
let previous = Promise.resolve();
Query.prototype.run = function (...args) {
  const result = previous.then(() => runQuery.apply(this, args));
  previous = result.catch(() => undefined);
  return result;
};

const Server = require("reqlite");
new Server({ "driver-port": wanted || 1, silent: true });
// The parent's end of stdin closing means the test run is over: exit rather than linger.
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
