// The client-library scenario for fhir-kit-client (unmodified, from npm), run by
// tests/e2e/test_client_libraries.py with one JSON argument (steps, base URL, client id,
// key file, ids). Steps "book": get a token, book with return=minimal, follow Location;
// "search": get a token, page with _elements, read a Slot with _total=accurate. It
// prints what it saw as JSON; the Python test judges it.
import { createPrivateKey, randomUUID, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client } from 'fhir-kit-client';

const args = JSON.parse(process.argv[2]);
const client = new Client({ baseUrl: args.base });

function base64url(value) {
  return Buffer.from(value).toString('base64url');
}

// A SMART Backend Services client assertion, signed RS384 with the registered key.
function assertion(audience) {
  const header = { alg: 'RS384', typ: 'JWT', kid: args.kid };
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: args.clientId, sub: args.clientId, aud: audience, exp: now + 240, jti: randomUUID(),
  };
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const key = createPrivateKey(readFileSync(args.keyFile));
  return `${input}.${base64url(sign('sha384', Buffer.from(input), key))}`;
}

const { tokenUrl } = await client.smartAuthMetadata();
const tokenResponse = await fetch(tokenUrl, {
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({
    grant_type: 'client_credentials',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion(tokenUrl.toString()),
    scope: args.scope,
  }),
});
const token = await tokenResponse.json();
if (!tokenResponse.ok) throw new Error(`token: ${JSON.stringify(token)}`);
client.bearerToken = token.access_token;

const report = { tokenScope: token.scope };

if (args.steps === 'book') {
  const created = await client.create({
    resourceType: 'Appointment',
    body: {
      resourceType: 'Appointment',
      status: 'booked',
      slot: [{ reference: `Slot/${args.slot}` }],
      participant: [{ actor: { reference: `Patient/${args.patient}` }, status: 'accepted' }],
    },
    options: { headers: { Prefer: 'return=minimal' } },
  });
  const { response } = Client.httpFor(created);
  const followed = await client.request(response.headers.get('location'));
  report.created = { status: response.status, body: { ...created } };
  report.followed = { resourceType: followed.resourceType, slot: followed.slot };
}

if (args.steps === 'search') {
  const ids = [];
  const subsetted = [];
  let pages = 0;
  let page = await client.search({
    resourceType: 'Slot',
    searchParams: { schedule: `Schedule/${args.schedule}`, _count: args.page, _elements: 'start,status' },
  });
  while (page) {
    pages += 1;
    for (const entry of page.entry ?? []) {
      const slot = entry.resource;
      ids.push(slot.id);
      // _elements=start,status: those, marked SUBSETTED, no optional element not asked for.
      subsetted.push(
        'start' in slot && 'status' in slot
        && !['appointmentType', 'serviceType', 'extension'].some((k) => k in slot)
        && (slot.meta?.tag ?? []).some((t) => t.code === 'SUBSETTED'),
      );
    }
    page = await client.nextPage({ bundle: page });
  }

  const counted = await client.search({
    resourceType: 'Slot', searchParams: { _id: args.slot, _total: 'accurate' },
  });
  report.paged = { ids, pages, subsetted };
  report.counted = { total: counted.total, id: counted.entry?.[0]?.resource?.id };
}

console.log(JSON.stringify(report));
