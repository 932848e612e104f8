// node-oidc-provider on loopback, for the end-to-end tests: an independent,
// OpenID-certified provider, configured as strict servers are. Refresh
// tokens rotate, and a replayed one revokes the whole grant; the client
// secrets hold `+ / : %` and a space (form-encoded in HTTP Basic, as RFC 6749
// says and this server decodes); offline_access
// needs prompt=consent; PKCE is required. Resource indicators (RFC 8707)
// under https://api.test/ get JWT access tokens with that audience. Prints
// `issuer=URL` once listening on 127.0.0.1 (a free port).
//
// Environment: REDIRECT_URI, the loopback redirect registered for the login
// clients; ACCESS_TTL, access token lifetime in seconds (default 3600);
// TLS_CERT and TLS_KEY, PEM files: serve HTTPS (the issuer is https://);
// TOKEN_DELAY_MS, hold every token request that long (a slow provider).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import Provider, { errors } from 'oidc-provider';

const redirect = process.env.REDIRECT_URI || 'http://127.0.0.1:3000/login';
const ttl = Number(process.env.ACCESS_TTL || 3600);
const tokenDelay = Number(process.env.TOKEN_DELAY_MS || 0);

const login = { grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], redirect_uris: [redirect] };
const clients = [
  { client_id: 'basic-client', client_secret: 'basic+/:% secret', token_endpoint_auth_method: 'client_secret_basic', ...login },
  { client_id: 'post-client', client_secret: 'post+/:% secret', token_endpoint_auth_method: 'client_secret_post', ...login },
  { client_id: 'public-client', token_endpoint_auth_method: 'none', application_type: 'native', ...login },
  // bench/run's client: oidc-agent, side by side with a365, gets a plain secret.
  { client_id: 'bench-client', client_secret: 'bench-secret', token_endpoint_auth_method: 'client_secret_post', ...login },
  {
    client_id: 'cc-client', client_secret: 'cc+/:% secret', token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'api',
  },
];

const tls = process.env.TLS_CERT
  ? { cert: readFileSync(process.env.TLS_CERT), key: readFileSync(process.env.TLS_KEY) }
  : null;
const server = tls ? https.createServer(tls) : http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `${tls ? 'https' : 'http'}://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients,
    scopes: ['openid', 'offline_access', 'api'],
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => {
          if (!resource.startsWith('https://api.test/')) throw new errors.InvalidTarget();
          return { scope: 'api', audience: resource, accessTokenFormat: 'jwt' };
        },
      },
    },
    rotateRefreshToken: true,
    pkce: { required: () => true },
    ttl: {
      AccessToken: ttl,
      ClientCredentials: ttl,
      RefreshToken: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
      Interaction: 600,
      Session: 3600,
    },
    findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  });
  if (tokenDelay > 0) {
    provider.use(async (ctx, next) => {
      if (ctx.method === 'POST' && ctx.path === '/token') await new Promise((done) => setTimeout(done, tokenDelay));
      await next();
    });
  }
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  provider.on('grant.error', (ctx, err) => console.error('grant.error', err.message, err.error_description || ''));
  provider.on('grant.revoked', (ctx, grantId) => console.error('grant.revoked', grantId));
  server.on('request', provider.callback());
  console.log(`issuer=${issuer}`);
});
process.on('SIGTERM', () => process.exit(0));
