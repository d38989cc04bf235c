// An independent OpenID Provider for the sign-in tests: panva/oidc-provider (OpenID Certified),
// configured with one confidential client and a few users who carry a `groups` claim.
//
// Environment (set by tests/oidc_fixture.py):
//   PORT           loopback port to listen on
//   ISSUER         the issuer identifier, e.g. http://127.0.0.1:PORT
//   JWKS_FILE      JSON file with the private signing keys ({"keys": [...]}); the tests keep a
//                  copy so they can mint tokens that only differ from the provider's in one claim
//   CLIENT_ID, CLIENT_SECRET, REDIRECT_URIS (comma-separated, one per IdP slug of the service)
//
// Login is browser-less: GET /interaction/:uid shows a form, POST /interaction/:uid/login with
// `login=<user>` signs that user in; optional `amr` (comma-separated RFC 8176 values) and `acr`
// say how, as a real provider does after a password or an MFA prompt (step-up tests). Consent is implied for the test client (loadExistingGrant),
// as a corporate IdP does for an admin-approved application.
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};

const PORT = Number(env('PORT'));
const ISSUER = env('ISSUER');
const CLIENT_ID = env('CLIENT_ID');
const SCOPES = 'openid email profile groups';

// `bob`'s groups are only released at the userinfo endpoint, like a provider that keeps large
// group lists out of the ID token; the service must then ask userinfo for them.
const USERS = {
  alice: {
    email: 'alice@corp.example', email_verified: true, name: 'Alice Example',
    groups: ['aws-pb-cloud-eng', 'all-staff'],
  },
  bob: {
    email: 'bob@corp.example', email_verified: true, name: 'Bob Example',
    groups: ['aws-dw-database-eng'], groupsOnlyAtUserinfo: true,
  },
  mallory: {
    email: 'ceo@corp.example', email_verified: false, name: 'Not The CEO', groups: [],
  },
};

const findAccount = async (_ctx, id) => {
  const user = USERS[id];
  if (!user) return undefined;
  return {
    accountId: id,
    async claims(use) {
      const claims = {
        sub: id, email: user.email, email_verified: user.email_verified, name: user.name,
      };
      if (!(user.groupsOnlyAtUserinfo && use === 'id_token')) claims.groups = user.groups;
      return claims;
    },
  };
};

const provider = new Provider(ISSUER, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: env('CLIENT_SECRET'),
    redirect_uris: env('REDIRECT_URIS').split(','),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'RS256',
    // auth_time in every ID token, as Okta and Entra ID send it.
    require_auth_time: true,
  }],
  acrValues: ['urn:okta:loa:1fa:pwd', 'urn:okta:loa:2fa:any'],
  jwks: JSON.parse(readFileSync(env('JWKS_FILE'), 'utf8')),
  findAccount,
  claims: {
    openid: ['sub', 'acr', 'amr', 'auth_time'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: SCOPES.split(' '),
  // Put scope-granted claims in the ID token too (the default keeps them for userinfo only).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['test-only-cookie-key'] },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(SCOPES);
    await grant.save();
    return grant;
  },
});

const readForm = (req) => new Promise((resolve, reject) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => resolve(new URLSearchParams(body)));
  req.on('error', reject);
});

const interaction = async (req, res) => {
  const [, , uid, action] = new URL(req.url, ISSUER).pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid || details.prompt.name !== 'login') {
    res.writeHead(400, { 'content-type': 'text/plain' }).end('unexpected interaction');
    return;
  }
  if (req.method === 'GET' && !action) {
    res.writeHead(200, { 'content-type': 'text/html' }).end(
      `<form method="post" action="/interaction/${uid}/login">`
      + '<input name="login"><button>Sign in</button></form>',
    );
    return;
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const login = form.get('login');
    if (!USERS[login]) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('unknown user');
      return;
    }
    const how = {};
    if (form.get('amr')) how.amr = form.get('amr').split(',');
    if (form.get('acr')) how.acr = form.get('acr');
    await provider.interactionFinished(req, res, { login: { accountId: login, ...how } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }
  res.writeHead(405).end();
};

const handle = provider.callback();
http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err));
    });
    return;
  }
  handle(req, res);
}).listen(PORT, '127.0.0.1', () => {
  process.stdout.write(`oidc-provider listening on ${ISSUER}\n`);
});
