// Preloaded into Node test peers (`node --import ./loopback.mjs ...`) that call
// `server.listen(port, cb)` with no host, which binds every interface: tests bind 127.0.0.1 only.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if ((typeof args[0] === "number" || typeof args[0] === "string") && typeof args[1] !== "string") {
    args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
