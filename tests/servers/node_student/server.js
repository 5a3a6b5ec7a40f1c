// A CloudHash/1 server in Node.js, written the way a student would from
// PROTOCOL.md: line mode, PING ECHO SET GET DEL INCR INFO QUIT, one shared
// store, no optional features and no idle timeout. It reads the flags the
// suite passes and ignores the rest.
//
//   node server.js --port 4481 --host 127.0.0.1
"use strict";
const net = require("net");

function flag(name, fallback) {
  const at = process.argv.indexOf(name);
  return at > 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const MAX_LINE = 8192;
const MAX_CONNECTIONS = 64;
const INFO =
  "proto=cloudhash/1 arch=node-evented concurrency=64 max_connections=64 overflow=busy " +
  "idle_timeout_ms=0 max_line=8192 max_frame=1048576 features=";
const KEY = /^[^ \r\n\0]{1,250}$/;
const store = new Map();
let open = 0;

function execute(line) {
  const space = line.indexOf(" ");
  const command = (space < 0 ? line : line.slice(0, space)).toUpperCase();
  const rest = space < 0 ? null : line.slice(space + 1);
  if (command === "ECHO") return rest === null ? "-ERR SYNTAX ECHO takes data" : "$" + rest;
  if (command === "SET") {
    const gap = rest === null ? -1 : rest.indexOf(" ");
    if (gap < 0 || !KEY.test(rest.slice(0, gap))) return "-ERR SYNTAX SET takes a key and a value";
    store.set(rest.slice(0, gap), rest.slice(gap + 1));
    return "+OK";
  }
  const none = ["PING", "INFO", "QUIT", "FRAMED", "STARTTLS"];
  const one = ["GET", "DEL", "INCR", "SLEEP"];
  if (!none.includes(command) && !one.includes(command)) return "-ERR UNKNOWN unknown command";
  const args = rest === null ? [] : rest.split(" ");
  if (args.length !== (one.includes(command) ? 1 : 0) || args.includes("")) {
    return "-ERR SYNTAX wrong arguments for " + command;
  }
  if (command === "PING") return "+PONG";
  if (command === "INFO") return "$" + INFO;
  if (command === "QUIT") return "+BYE";
  if (command === "FRAMED" || command === "STARTTLS") return "-ERR STATE not supported by this server";
  const key = args[0];
  if (command === "SLEEP") return null; // answered by the caller, after a timer
  if (!KEY.test(key)) return "-ERR SYNTAX invalid key";
  if (command === "GET") return store.has(key) ? "$" + store.get(key) : "_";
  if (command === "DEL") return store.delete(key) ? ":1" : ":0";
  const value = store.has(key) ? store.get(key) : "0"; // INCR
  if (!/^-?[0-9]+$/.test(value)) return "-ERR TYPE value is not a 64-bit integer";
  const number = BigInt(value);
  if (number < -(2n ** 63n) || number >= 2n ** 63n) return "-ERR TYPE value is not a 64-bit integer";
  if (number === 2n ** 63n - 1n) return "-ERR RANGE INCR would overflow";
  store.set(key, (number + 1n).toString());
  return ":" + (number + 1n).toString();
}

function serve(socket) {
  if (open >= MAX_CONNECTIONS) {
    socket.end("-ERR BUSY too many connections\r\n");
    return;
  }
  open += 1;
  socket.on("close", () => (open -= 1));
  socket.on("error", () => {});
  let buffer = Buffer.alloc(0);
  let queue = Promise.resolve(); // replies go out in order, SLEEP included
  socket.on("data", (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    let end;
    while ((end = buffer.indexOf(10)) >= 0) {
      let line = buffer.subarray(0, end).toString("latin1");
      buffer = buffer.subarray(end + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") continue;
      queue = queue.then(() => answer(socket, line));
    }
    if (buffer.length >= MAX_LINE) {
      queue = queue.then(() => socket.end("-ERR TOOLONG line too long\r\n"));
      buffer = Buffer.alloc(0);
    }
  });
}

function answer(socket, line) {
  if (socket.destroyed || socket.writableEnded) return undefined;
  const reply = execute(line);
  if (reply === "+BYE") {
    socket.end("+BYE\r\n");
    return undefined;
  }
  if (reply !== null) {
    socket.write(reply + "\r\n", "latin1");
    return undefined;
  }
  const ms = line.split(" ")[1];
  if (!/^[0-9]+$/.test(ms)) {
    socket.write("-ERR SYNTAX SLEEP takes milliseconds\r\n");
    return undefined;
  }
  if (ms.length > 5 || Number(ms) > 60000) {
    socket.write("-ERR RANGE SLEEP takes 0 to 60000 ms\r\n");
    return undefined;
  }
  return new Promise((done) => setTimeout(() => done(socket.write("+OK\r\n")), Number(ms)));
}

const server = net.createServer(serve);
server.listen(Number(flag("--port", "4481")), flag("--host", "127.0.0.1"), () => {
  const address = server.address();
  process.stdout.write(`READY cloudhash/1 ${address.address} ${address.port}\n`);
});
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
