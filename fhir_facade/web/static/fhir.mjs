// Talking to the public /fhir API with the signed-in user's token, and reading what it
// answers. Nothing here knows about screens.

export const BASE = new URL("../fhir", import.meta.url).pathname;
const FHIR_JSON = "application/fhir+json";
export const EXT = {
  capacity: "http://fhir-facade.org/fhir/StructureDefinition/group-capacity",
  closed: "http://fhir-facade.org/fhir/StructureDefinition/closed-session",
  timezone: "http://hl7.org/fhir/StructureDefinition/timezone",
  offerExpires: "http://fhir-facade.org/fhir/StructureDefinition/waitlist-offer-expires",
};
const SELF_PAY = "http://terminology.hl7.org/CodeSystem/coverage-selfpay";
const CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const MRN = "http://fhir-facade.org/fhir/sid/mrn";
export const SSN = "http://hl7.org/fhir/sid/us-ssn";

/** A refused request: its status, its OperationOutcome and a sentence for a person. */
export class FhirError extends Error {
  constructor(status, outcome, message) {
    super(message);
    this.status = status;
    this.outcome = outcome;
  }
  get codes() {
    return (this.outcome?.issue || []).flatMap((i) => (i.details?.coding || []).map((c) => c.code));
  }
  get expressions() {
    return (this.outcome?.issue || []).flatMap((i) => i.expression || []);
  }
}

export class Client {
  constructor(token, onExpired) {
    this.token = token;
    this.onExpired = onExpired;
  }

  async request(method, path, { body, headers = {}, params } = {}) {
    const url = new URL(path.startsWith("/") ? path : `${BASE}/${path}`, location.origin);
    for (const [key, value] of params || []) url.searchParams.append(key, value);
    const init = { method, headers: { Accept: FHIR_JSON, Authorization: `Bearer ${this.token}`, ...headers } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = FHIR_JSON;
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new FhirError(0, null, "The server cannot be reached. Check the connection and try again.");
    }
    const text = await response.text();
    const json = text ? JSON.parse(text) : null;
    if (!response.ok) {
      if (response.status === 401 && this.onExpired) this.onExpired();
      throw new FhirError(response.status, json, humanMessage(response.status, json));
    }
    return { json, headers: response.headers, status: response.status };
  }

  async search(type, params) {
    const { json } = await this.request("GET", type, { params });
    return json;
  }

  async read(type, id) {
    return (await this.request("GET", `${type}/${encodeURIComponent(id)}`)).json;
  }
}

/** Sentences for the refusals a scheduler meets; the server's own text otherwise. */
export function humanMessage(status, outcome) {
  const issues = outcome?.issue || [];
  const codes = issues.flatMap((i) => (i.details?.coding || []).map((c) => c.code));
  const expressions = issues.flatMap((i) => i.expression || []);
  const said = issues.map((i) => i.details?.text || i.diagnostics).filter(Boolean).join(" ");
  if (codes.includes("session-full")) return "This session is full: nobody else can be booked into it. Choose another session.";
  if (codes.includes("already-booked")) return "This patient is already booked into this session.";
  if (codes.includes("already-waitlisted")) return "This patient is already on this session's waitlist.";
  if (codes.includes("session-has-room")) return "A place in this session is free again: book the patient instead of adding them to the waitlist.";
  if (codes.includes("session-unavailable")) return "This session is unavailable: an administrator has blocked it.";
  if (status === 412) return "This appointment was changed by someone else since you opened it. Reload it and try again.";
  if (status === 422 && expressions.some((e) => e.startsWith("Appointment.start") || e.startsWith("Appointment.end")))
    return "This session has changed since you opened the calendar (its time moved). Go back to the calendar to see it as it is now.";
  if (status === 401) return "Your sign-in has expired. Please sign in again.";
  if (status === 403) return `You do not have permission to do this. ${said}`.trim();
  if (status === 404) return `Not found: it may have been removed, or you may not be allowed to see it. ${said}`.trim();
  return said || `The server refused the request (HTTP ${status}).`;
}

export const resources = (bundle, type) =>
  (bundle?.entry || []).map((e) => e.resource).filter((r) => !type || r.resourceType === type);

/** When a waitlist offer (a pending Appointment) lapses, or null. */
export const offerExpiry = (appointment) =>
  (appointment.extension || []).find((e) => e.url === EXT.offerExpires)?.valueInstant || null;

export const ref = (resource) => `${resource.resourceType}/${resource.id}`;

export function capacityOf(slot) {
  const ext = (slot.extension || []).find((e) => e.url === EXT.capacity);
  const parts = Object.fromEntries((ext?.extension || []).map((p) => [p.url, p.valueUnsignedInt]));
  return { capacity: parts.capacity ?? 1, booked: parts.booked ?? 0 };
}

export const isClosed = (slot) => (slot.extension || []).some((e) => e.url === EXT.closed && e.valueBoolean);

export const codingOf = (concept) => concept?.coding?.[0] || null;
export const conceptText = (concept) => concept?.text || codingOf(concept)?.display || codingOf(concept)?.code || "";

export function timezoneOf(locationResource) {
  const ext = (locationResource?.extension || []).find((e) => e.url === EXT.timezone);
  return ext?.valueCode || "UTC";
}

export function patientName(patient) {
  const name = patient?.name?.[0];
  if (!name) return patient?.id || "";
  return `${name.family || ""}, ${(name.given || []).join(" ")}`.trim();
}

export const isRestricted = (patient) =>
  (patient?.meta?.security || []).some((s) => s.system === CONFIDENTIALITY && s.code === "R");

export const mrnOf = (patient) => (patient?.identifier || []).find((i) => i.system === MRN)?.value || "";
export const ssnOf = (patient) => (patient?.identifier || []).find((i) => i.system === SSN)?.value || "";
export const phoneOf = (patient) => (patient?.telecom || []).find((t) => t.system === "phone")?.value || "";

export const isSelfPay = (coverage) => (coverage.type?.coding || []).some((c) => c.system === SELF_PAY);

export function selfPayCoverage(patientId) {
  return {
    resourceType: "Coverage",
    status: "active",
    type: { coding: [{ system: SELF_PAY, code: "pay", display: "PAY" }], text: "SELF PAY" },
    beneficiary: { reference: `Patient/${patientId}` },
    payor: [{ reference: `Patient/${patientId}` }],
  };
}

/** The ways one search box finds a patient, as separate FHIR searches run together. */
export function patientQueries(text) {
  const q = text.trim();
  const digits = q.replace(/\D/g, "");
  const queries = [];
  if (!q) return queries;
  if (/\p{L}/u.test(q) && !/\d/.test(q)) queries.push([["family", q]]);
  if (/^[A-Za-z0-9\-.]{1,64}$/.test(q)) {
    queries.push([["identifier", q]]);
    queries.push([["_id", q]]);
  }
  if (digits.length === 9 && /^[\d\s-]+$/.test(q)) queries.push([["identifier", `${SSN}|${digits}`]]);
  if (digits.length >= 7 && /^[\d\s().+-]+$/.test(q)) queries.push([["phone", digits]]);
  return queries;
}

// ---- time, in a department's own zone -------------------------------------------------

const partsIn = (date, timeZone) =>
  Object.fromEntries(
    new Intl.DateTimeFormat("en-US", {
      timeZone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(date).map((p) => [p.type, p.value]),
  );

/** "YYYY-MM-DD" of an instant as seen in a zone. */
export function localDate(instant, timeZone) {
  const p = partsIn(new Date(instant), timeZone);
  return `${p.year}-${p.month}-${p.day}`;
}

export function localTime(instant, timeZone) {
  const p = partsIn(new Date(instant), timeZone);
  return `${p.hour}:${p.minute}`;
}

export function formatTime(instant, timeZone) {
  return new Intl.DateTimeFormat("en-US", { timeZone, hour: "numeric", minute: "2-digit" }).format(new Date(instant));
}

export function formatDate(isoDate, options = { weekday: "short", month: "short", day: "numeric", year: "numeric" }) {
  const [y, m, d] = isoDate.split("-").map(Number);
  return new Intl.DateTimeFormat("en-US", { timeZone: "UTC", ...options }).format(new Date(Date.UTC(y, m - 1, d)));
}

/** The UTC instant of a local date and time in a zone (ISO string, seconds precision). */
export function zonedInstant(isoDate, hhmm, timeZone) {
  const [y, m, d] = isoDate.split("-").map(Number);
  const [hh, mm] = hhmm.split(":").map(Number);
  const wanted = Date.UTC(y, m - 1, d, hh, mm);
  let guess = wanted;
  for (let i = 0; i < 2; i++) {
    const p = partsIn(new Date(guess), timeZone);
    const seen = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute);
    guess += wanted - seen;
  }
  return new Date(guess).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function addDays(isoDate, days) {
  const [y, m, d] = isoDate.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}

export function mondayOf(isoDate) {
  const [y, m, d] = isoDate.split("-").map(Number);
  const weekday = (new Date(Date.UTC(y, m - 1, d)).getUTCDay() + 6) % 7;
  return addDays(isoDate, -weekday);
}

export const todayIn = (timeZone) => localDate(new Date(), timeZone);

export const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
export const weekdayOf = (isoDate) => WEEKDAYS[(new Date(`${isoDate}T00:00:00Z`).getUTCDay() + 6) % 7];
