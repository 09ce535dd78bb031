// Drives the real `@a2a-js/sdk` client against an agent URL (the gateway's): discovers the card,
// sends a message, streams one, then gets and cancels a long task. Prints one JSON result.
//
//   node a2a_client.mjs <url> <node_modules dir> [header=value ...]
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [url, modules, ...headerArgs] = process.argv.slice(2);
const require = createRequire(`${modules}/`);
const load = async (name) => import(pathToFileURL(require.resolve(name)).href);
const { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory } =
  await load("@a2a-js/sdk/client");
const { Role } = await load("@a2a-js/sdk");

const headers = Object.fromEntries(headerArgs.map((h) => h.split("=")));
const fetchWithHeaders = (input, init = {}) =>
  fetch(input, { ...init, headers: { ...(init.headers || {}), ...headers } });

const factory = new ClientFactory(
  ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
    transports: [new JsonRpcTransportFactory({ fetchImpl: fetchWithHeaders })],
    cardResolver: new DefaultAgentCardResolver({ fetchImpl: fetchWithHeaders }),
  }),
);
// The card path resolves against the base URL, so the base must end with "/".
const client = await factory.createFromUrl(url.endsWith("/") ? url : `${url}/`);
const msg = (text, id) => ({ message: { messageId: id, role: Role.ROLE_USER, parts: [{ content: { $case: "text", value: text }, text }] } });

const out = { card_urls: (await factory.options?.cardResolver?.resolve?.(url.endsWith("/") ? url : `${url}/`))?.supportedInterfaces?.map((i) => i.url) };
const sent = await client.sendMessage(msg("hello", "j1"));
out.sent = JSON.parse(JSON.stringify(sent, (k, v) => (typeof v === "bigint" ? Number(v) : v)));
const kinds = [];
for await (const ev of client.sendMessageStream(msg("stream me", "j2"))) {
  kinds.push(ev?.payload?.$case ?? ev?.kind ?? Object.keys(ev)[0]);
}
out.kinds = kinds;
let taskId;
for await (const ev of client.sendMessageStream(msg("please wait", "j3"))) {
  const p = ev?.payload;
  taskId = p?.value?.id ?? p?.value?.taskId;
  if (taskId) break;
}
const got = await client.getTask({ id: taskId });
const cancelled = await client.cancelTask({ id: taskId });
out.got = got?.status?.state;
out.cancelled = cancelled?.status?.state;
console.log(JSON.stringify(out, (k, v) => (typeof v === "bigint" ? Number(v) : v)));
