// A real OpenID provider on 127.0.0.1 for Plaudit's tests: panva/oidc-provider with the
// client-credentials grant issuing JWT access tokens (RFC 9068) for the audience "plaudit".
// Usage: node provider.mjs PORT_FILE — writes the port it listens on to PORT_FILE.
import { generateKeyPairSync } from "node:crypto";
import { renameSync, writeFileSync } from "node:fs";
import Provider from "oidc-provider";

const portFile = process.argv[2];
const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: "jwk" }), kid: "test-key", use: "sig", alg: "RS256" };

const server = (await import("node:http")).createServer();
server.listen(0, "127.0.0.1", () => {
  const port = server.address().port;
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [
      {
        client_id: "crm-sync",
        client_secret: "crm-sync-secret",
        grant_types: ["client_credentials"],
        redirect_uris: [],
        response_types: [],
      },
      {
        client_id: "acme-sync",
        client_secret: "acme-sync-secret",
        grant_types: ["client_credentials"],
        redirect_uris: [],
        response_types: [],
      },
    ],
    jwks: { keys: [jwk] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => "urn:plaudit",
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: "events",
          audience: "plaudit",
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: "RS256" } },
        }),
      },
    },
    // What Plaudit reads: the tenant and the roles of each service.
    extraTokenClaims: (ctx, token) =>
      token.clientId === "acme-sync"
        ? { plaudit_tenant: "acme", plaudit_roles: ["ingest"] }
        : { plaudit_tenant: "default", plaudit_roles: ["ingest"] },
  });
  provider.proxy = false;
  server.on("request", provider.callback());
  // Whole or not at all: the test reads the file as soon as it exists.
  writeFileSync(`${portFile}.partial`, String(port));
  renameSync(`${portFile}.partial`, portFile);
});
