// Book Appointment: find the patient, pick their insurance, check the booking form, then
// Review → Book appointment; or Create New Slot; or Create Recurring Series.

import { html, useEffect, useRef, useState } from "./vendor/htm-preact-standalone-3.1.1.mjs";
import {
  capacityOf, codingOf, conceptText, formatDate, formatTime, isRestricted, isSelfPay, localDate, localTime,
  mondayOf, mrnOf, patientName, patientQueries, phoneOf, ref, resources, selfPayCoverage, ssnOf, weekdayOf,
  WEEKDAYS, zonedInstant,
} from "./fhir.mjs";
import { ClosedIcon, ErrorBox, Loading, LockIcon, WarnIcon, sessionFacts, useLoad } from "./ui.mjs";

// ---- patient search ----------------------------------------------------------------------

function PatientSearch({ client, chosen, onChoose }) {
  const [text, setText] = useState("");
  const [state, setState] = useState({ results: null, error: null, loading: false, searched: "" });
  const search = async (event) => {
    event.preventDefault();
    const queries = patientQueries(text);
    if (!queries.length) return setState({ results: [], error: null, loading: false, searched: text });
    setState({ results: null, error: null, loading: true, searched: "" });
    try {
      const bundles = await Promise.all(queries.map((q) => client.search("Patient", [...q, ["_count", "50"]])));
      const byId = new Map();
      for (const patient of bundles.flatMap((b) => resources(b, "Patient"))) byId.set(patient.id, patient);
      const results = [...byId.values()].sort((a, b) => patientName(a).localeCompare(patientName(b)));
      setState({ results, error: null, loading: false, searched: text });
    } catch (error) {
      setState({ results: null, error, loading: false, searched: text });
    }
  };
  return html`<section aria-labelledby="find-heading">
    <h3 id="find-heading">Patient</h3>
    <form role="search" onSubmit=${search} class="row">
      <div class="field"><label for="patient-search">Find a patient</label>
        <input id="patient-search" type="search" size="34" value=${text} onInput=${(e) => setText(e.target.value)}
          aria-describedby="patient-search-hint" autocomplete="off" />
        <div id="patient-search-hint" class="muted">Last name, patient ID or MRN, SSN (with or without dashes), or phone</div></div>
      <div class="field"><button class="primary" type="submit">Search</button></div>
    </form>
    ${state.loading && html`<${Loading} what="patients" />`}
    <div data-searched=${state.searched}><${ErrorBox} error=${state.error} />
    ${state.results && (state.results.length === 0 ? html`<p role="status">No patient found for “${text}”.</p>` : html`
      <ul class="results" aria-label="Patients found">${state.results.map((p) => html`<li key=${p.id}>
        <button aria-pressed=${chosen?.id === p.id} data-patient=${p.id} onClick=${() => onChoose(p)}>
          ${isRestricted(p) && html`<${LockIcon} /> `}<strong>${patientName(p)}</strong> · DOB ${p.birthDate || "—"}
          · ${mrnOf(p) || p.id}${phoneOf(p) ? ` · ${phoneOf(p)}` : ""}${ssnOf(p) ? ` · SSN ${ssnOf(p)}` : ""}
        </button></li>`)}</ul>`)}</div>
  </section>`;
}

// ---- patient card: insurance -----------------------------------------------------------------

const period = (c) => (c.period ? `${c.period.start?.slice(0, 10) || "…"} to ${c.period.end?.slice(0, 10) || "open"}` : "no end date");
export const planLabel = (c, payers) =>
  isSelfPay(c) ? "SELF PAY" : `${payers[c.payor?.[0]?.reference]?.name || c.payor?.[0]?.display || c.payor?.[0]?.reference}`;

function PatientCard({ client, patient, insurance, setInsurance }) {
  const coverages = useLoad(async () => {
    const bundle = await client.search("Coverage", [["patient", ref(patient)], ["status", "active"], ["_include", "Coverage:payor"]]);
    const payers = Object.fromEntries(resources(bundle, "Organization").map((o) => [ref(o), o]));
    const plans = resources(bundle, "Coverage").sort((a, b) => (a.order ?? 99) - (b.order ?? 99));
    return { plans, payers };
  }, [patient.id]);
  useEffect(() => {
    if (!coverages.data) return;
    const insured = coverages.data.plans.filter((c) => !isSelfPay(c));
    setInsurance({ primary: insured[0]?.id || "self-pay", secondary: "", plans: coverages.data.plans, payers: coverages.data.payers });
  }, [coverages.data]);
  const insured = (coverages.data?.plans || []).filter((c) => !isSelfPay(c));
  return html`<section class="card" aria-labelledby="patient-card-heading" data-testid="patient-card">
    <h3 id="patient-card-heading">${isRestricted(patient) && html`<${LockIcon} /> `}${patientName(patient)}</h3>
    <div class="grid2 muted"><span>DOB ${patient.birthDate || "—"}</span><span>${mrnOf(patient) || patient.id}</span><span>${phoneOf(patient)}</span></div>
    ${coverages.loading && html`<${Loading} what="insurance plans" />`}
    <${ErrorBox} error=${coverages.error} />
    ${coverages.data && insurance && html`
      <fieldset class="plans"><legend><strong>Primary insurance</strong></legend>
        ${insured.map((c) => html`<label key=${c.id}><input type="radio" name="primary" value=${c.id} checked=${insurance.primary === c.id}
            onChange=${() => setInsurance({ ...insurance, primary: c.id, secondary: insurance.secondary === c.id ? "" : insurance.secondary })} />
          <span><strong>${planLabel(c, coverages.data.payers)}</strong> · Member ID ${c.subscriberId || "—"} · valid ${period(c)}</span></label>`)}
        <label><input type="radio" name="primary" value="self-pay" checked=${insurance.primary === "self-pay"}
          onChange=${() => setInsurance({ ...insurance, primary: "self-pay", secondary: "" })} /> <strong>SELF PAY</strong></label>
      </fieldset>
      ${insurance.primary !== "self-pay" && insured.length > 1 && html`<div class="field">
        <label for="secondary">Secondary insurance (optional)</label>
        <select id="secondary" value=${insurance.secondary} onChange=${(e) => setInsurance({ ...insurance, secondary: e.target.value })}>
          <option value="">None</option>
          ${insured.filter((c) => c.id !== insurance.primary).map((c) => html`<option value=${c.id}>${planLabel(c, coverages.data.payers)} · Member ID ${c.subscriberId || "—"} · valid ${period(c)}</option>`)}
        </select></div>`}`}
  </section>`;
}

/** The Coverage ids to send, primary first; a self-pay Coverage is created when the patient has none. */
export async function coverageIds(client, patient, insurance) {
  if (insurance.primary !== "self-pay") return [insurance.primary, insurance.secondary].filter(Boolean);
  const existing = insurance.plans.find(isSelfPay);
  if (existing) return [existing.id];
  const { json } = await client.request("POST", "Coverage", { body: selfPayCoverage(patient.id) });
  insurance.plans.push(json);
  return [json.id];
}

// ---- create a new slot (needs __schedule.manage) -------------------------------------------------

function CreateSlot({ client, schedule, slot, facts, types, onCreated, onCancel }) {
  const minutes = Math.round((new Date(slot.end) - new Date(slot.start)) / 60000);
  const [form, setForm] = useState({ date: facts.date, time: localTime(slot.start, facts.tz), minutes, capacity: facts.capacity, type: codingOf(slot.appointmentType)?.code });
  const [state, setState] = useState({ busy: false, error: null });
  const set = (key) => (e) => setForm({ ...form, [key]: e.target.value });
  const create = async (event) => {
    event.preventDefault();
    setState({ busy: true, error: null });
    const start = zonedInstant(form.date, form.time, facts.tz);
    const end = new Date(new Date(start).getTime() + Number(form.minutes) * 60000).toISOString().replace(/\.\d{3}Z$/, "Z");
    const type = types.find((t) => t.code === form.type);
    const body = {
      resourceType: "Slot", status: "free", schedule: { reference: ref(schedule) }, start, end,
      serviceType: slot.serviceType, appointmentType: { coding: [type], text: type.display },
      extension: [{ url: "http://fhir-facade.org/fhir/StructureDefinition/group-capacity", extension: [{ url: "capacity", valueUnsignedInt: Number(form.capacity) }] }],
    };
    try {
      const { json } = await client.request("POST", "Slot", { body });
      onCreated(json);
    } catch (error) {
      setState({ busy: false, error });
    }
  };
  return html`<form class="card" onSubmit=${create} aria-labelledby="new-slot-heading">
    <h3 id="new-slot-heading">Create New Slot for ${facts.provider?.display}</h3>
    <div class="row">
      <div class="field"><label for="new-date">Date</label><input id="new-date" type="date" required value=${form.date} onInput=${set("date")} /></div>
      <div class="field"><label for="new-time">Start time (${facts.tz})</label><input id="new-time" type="time" required value=${form.time} onInput=${set("time")} /></div>
      <div class="field"><label for="new-minutes">Minutes</label><input id="new-minutes" type="number" min="5" max="600" required value=${form.minutes} onInput=${set("minutes")} /></div>
      <div class="field"><label for="new-capacity">Places</label><input id="new-capacity" type="number" min="1" max="100" required value=${form.capacity} onInput=${set("capacity")} /></div>
      <div class="field"><label for="new-type">Appointment type</label>
        <select id="new-type" value=${form.type} onChange=${set("type")}>${types.map((t) => html`<option value=${t.code}>${t.display}</option>`)}</select></div>
    </div>
    <${ErrorBox} error=${state.error} />
    <div class="row"><button class="primary" type="submit" disabled=${state.busy}>${state.busy ? "Creating…" : "Create slot"}</button>
      <button type="button" onClick=${onCancel}>Cancel</button></div>
  </form>`;
}

// ---- the booking form and review ----------------------------------------------------------------

async function appointmentTypes(client, schedules, slot, tz) {
  // The clinic's appointment types, as its sessions around this date carry them.
  const day = localDate(slot.start, tz);
  const bundle = await client.search("Slot", [
    ["schedule", schedules.map(ref).join(",")], ["start", `ge${mondayOf(day)}`], ["start", `lt${addWeeks(mondayOf(day), 2)}`], ["_count", "500"],
  ]);
  const types = new Map();
  for (const s of [slot, ...resources(bundle, "Slot")]) {
    const coding = codingOf(s.appointmentType);
    if (coding && !types.has(coding.code)) types.set(coding.code, { system: coding.system, code: coding.code, display: coding.display || coding.code });
  }
  return [...types.values()];
}
const addWeeks = (isoDate, n) => new Date(Date.parse(`${isoDate}T00:00:00Z`) + n * 7 * 86400000).toISOString().slice(0, 10);

export function BookAppointment({ client, directory, canManage, slot: firstSlot, schedule, waitlist = false, onDone, onAppointments }) {
  const [slot, setSlot] = useState(firstSlot);
  const facts = sessionFacts(slot, schedule, directory);
  const [patient, setPatient] = useState(null);
  const [insurance, setInsurance] = useState(null);
  const providerRef = facts.provider?.reference;
  const [form, setForm] = useState({ department: facts.department?.id, resources: [providerRef], type: codingOf(slot.appointmentType)?.code || "" });
  const [mode, setMode] = useState("form"); // form | new-slot | review | series | booked
  const [notice, setNotice] = useState(null);
  const [result, setResult] = useState({ busy: false, error: null, warning: null });
  const types = useLoad(() => appointmentTypes(client, directory.schedules, slot, facts.tz), [slot.id]);
  const heading = useRef(null);
  useEffect(() => heading.current?.focus(), [mode]);
  const organization = directory.organizations.find((o) => ref(o) === facts.department?.managingOrganization?.reference);
  const department = directory.locations.find((l) => l.id === form.department) || facts.department;
  const chosenType = (types.data || []).find((t) => t.code === form.type);
  const practitionerName = (r) => directory.practitioners.find((p) => ref(p) === r)?.name?.[0]?.text
    || schedule.actor.find((a) => a.reference === r)?.display
    || directory.schedules.flatMap((s) => s.actor).find((a) => a.reference === r)?.display || r;

  const book = async () => {
    setResult({ busy: true, error: null, warning: null });
    try {
      const coverage = await coverageIds(client, patient, insurance);
      const body = {
        resourceType: "Appointment", status: waitlist ? "waitlist" : "booked",
        slot: [{ reference: ref(slot) }], start: slot.start, end: slot.end,
        appointmentType: chosenType ? { coding: [chosenType], text: chosenType.display } : slot.appointmentType,
        participant: [
          { actor: { reference: ref(patient) }, status: "accepted" },
          ...form.resources.map((r) => ({ actor: { reference: r }, status: "accepted" })),
          { actor: { reference: ref(department) }, status: "accepted" },
        ],
        supportingInformation: coverage.map((id) => ({ reference: `Coverage/${id}` })),
      };
      const { headers } = await client.request("POST", "Appointment", { body });
      const fresh = await client.read("Slot", slot.id);
      setSlot(fresh);
      const warning = headers.get("Warning");
      setResult({ busy: false, error: null, warning: warning ? warning.replace(/^299 \S+ "|"$/g, "") : null });
      setMode("booked");
    } catch (error) {
      setResult({ busy: false, error, warning: null });
    }
  };

  const sessionLine = html`${facts.type} · ${formatDate(facts.date)} · ${facts.time} · ${facts.provider?.display} ·
    <span class="count" data-testid="book-count">${capacityOf(slot).booked}/${capacityOf(slot).capacity}</span> booked${facts.closed ? html` <${ClosedIcon} />` : ""}`;

  if (mode === "booked" && waitlist)
    return html`<main id="main"><h2 tabindex="-1" ref=${heading}>Added to the waitlist</h2>
      <p class="notice" role="status">${patientName(patient)} is on the waitlist of ${sessionLine}. When a place frees, it goes to the first patient waiting.</p>
      <div class="row"><button class="primary" onClick=${() => onDone(slot, mondayOf(facts.date))}>Back to the calendar</button>
        <button onClick=${() => onAppointments(patient)}>View Patient Appointments</button></div></main>`;
  if (mode === "booked")
    return html`<main id="main"><h2 tabindex="-1" ref=${heading}>Appointment booked</h2>
      <p class="notice" role="status">${patientName(patient)} is booked into ${sessionLine}.</p>
      ${result.warning && html`<p class="warning" role="status"><${ClosedIcon} /> ${result.warning}</p>`}
      <div class="row"><button class="primary" onClick=${() => onDone(slot, mondayOf(facts.date))}>Back to the calendar</button>
        <button onClick=${() => onAppointments(patient)}>View Patient Appointments</button></div></main>`;

  return html`<main id="main">
    <h2 tabindex="-1" ref=${heading}>${mode === "review" ? "Review Appointment Details" : mode === "series" ? "Create Recurring Series" : waitlist ? "Join Waitlist" : "Book Appointment"}</h2>
    <p>${sessionLine}</p>
    <button onClick=${() => onDone(null)}>Back to the calendar</button>
    ${notice && html`<p class="notice" role="status">${notice}</p>`}
    ${mode === "review" ? html`<${Review} patient=${patient} insurance=${insurance} facts=${facts} organization=${organization}
        department=${department} resources=${form.resources.map(practitionerName)} type=${chosenType?.display || facts.type}
        result=${result} onBook=${book} onBack=${() => setMode("form")} waitlist=${waitlist} />`
    : mode === "series" ? html`<${Series} client=${client} patient=${patient} insurance=${insurance} slot=${slot} schedule=${schedule}
        facts=${facts} type=${chosenType} onBack=${() => setMode("form")} onAppointments=${() => onAppointments(patient)} />`
    : html`
      <${PatientSearch} client=${client} chosen=${patient} onChoose=${(p) => { setPatient(p); setInsurance(null); }} />
      ${patient && html`<${PatientCard} client=${client} patient=${patient} insurance=${insurance} setInsurance=${setInsurance} />`}
      <fieldset class="card"><legend><strong>Booking</strong></legend>
        <div class="grid2">
          <div class="field"><label for="provider-group">Provider Group</label><input id="provider-group" readonly value=${organization?.name || ""} /></div>
          <div class="field"><label for="booking-date">Date</label><input id="booking-date" readonly value=${formatDate(facts.date)} /></div>
          <div class="field"><label for="booking-department">Department</label>
            ${directory.locations.length > 1 ? html`<select id="booking-department" value=${form.department} onChange=${(e) => setForm({ ...form, department: e.target.value })}>
                ${directory.locations.map((l) => html`<option value=${l.id}>${l.name}</option>`)}</select>`
              : html`<input id="booking-department" readonly value=${department?.name} />`}</div>
          <div class="field"><label for="booking-type">Appointment Type</label>
            ${types.loading ? html`<${Loading} what="appointment types" />` : html`<select id="booking-type" value=${form.type} onChange=${(e) => setForm({ ...form, type: e.target.value })}>
              ${!form.type && html`<option value="">Not set</option>`}
              ${(types.data || []).map((t) => html`<option value=${t.code}>${t.display}</option>`)}</select>`}
            <${ErrorBox} error=${types.error} /></div>
          <div class="field"><label for="booking-time">Time</label><input id="booking-time" readonly value=${facts.time} /></div>
        </div>
        <fieldset class="plans"><legend><strong>Resource</strong> (providers for this appointment)</legend>
          <div class="grid2">${directory.practitioners.map((p) => html`<label key=${p.id}><input type="checkbox" checked=${form.resources.includes(ref(p))}
              onChange=${(e) => setForm({ ...form, resources: e.target.checked ? [...form.resources, ref(p)] : form.resources.filter((r) => r !== ref(p)) })} />
            ${practitionerName(ref(p))}</label>`)}</div>
        </fieldset>
      </fieldset>
      ${mode === "new-slot" && html`<${CreateSlot} client=${client} schedule=${schedule} slot=${slot} facts=${facts} types=${types.data || []}
          onCancel=${() => setMode("form")}
          onCreated=${(created) => { setSlot(created); setForm({ ...form, type: codingOf(created.appointmentType)?.code }); setMode("form"); setNotice(`New session created: ${formatDate(localDate(created.start, facts.tz))} ${formatTime(created.start, facts.tz)}. It is selected for this booking.`); }} />`}
      ${!patient && html`<p class="muted" id="needs-patient">Find and select a patient to continue.</p>`}
      ${form.resources.length === 0 && html`<p class="warning">Choose at least one provider.</p>`}
      <div class="row">
        <button class="primary" disabled=${!patient || !insurance || form.resources.length === 0} onClick=${() => setMode("review")}>Review</button>
        ${!waitlist && html`<button disabled=${!patient || !insurance} onClick=${() => setMode("series")}>Create Recurring Series</button>`}
        ${canManage && !waitlist && mode !== "new-slot" && html`<button onClick=${() => setMode("new-slot")}>Create New Slot</button>`}
        ${patient && html`<button onClick=${() => onAppointments(patient)}>View Patient Appointments</button>`}
      </div>`}
  </main>`;
}

function Review({ patient, insurance, facts, organization, department, resources: names, type, result, onBook, onBack, waitlist }) {
  const plan = (id) => {
    const c = insurance.plans.find((p) => p.id === id);
    return c ? `${planLabel(c, insurance.payers)} · Member ID ${c.subscriberId || "—"}` : "";
  };
  return html`<section class="card" aria-label="Appointment details">
    <dl class="facts">
      <dt>Patient</dt><dd>${isRestricted(patient) && html`<${LockIcon} /> `}${patientName(patient)} · DOB ${patient.birthDate}</dd>
      <dt>Primary insurance</dt><dd data-testid="review-primary">${insurance.primary === "self-pay" ? "SELF PAY" : plan(insurance.primary)}</dd>
      <dt>Secondary insurance</dt><dd>${insurance.secondary ? plan(insurance.secondary) : "None"}</dd>
      <dt>Provider Group</dt><dd>${organization?.name}</dd>
      <dt>Date</dt><dd>${formatDate(facts.date)}</dd>
      <dt>Time</dt><dd>${facts.time}</dd>
      <dt>Department</dt><dd>${department?.name}</dd>
      <dt>Resource</dt><dd>${names.join(", ")}</dd>
      <dt>Appointment Type</dt><dd>${type}</dd>
    </dl>
    ${facts.closed && html`<p class="warning"><${ClosedIcon} /> This is a closed session: the provider prefers no new patients once it has started. You can still book.</p>`}
    <${ErrorBox} error=${result.error} />
    ${waitlist && html`<p class="notice">The session is full: the patient joins its waitlist, behind the patients already waiting.</p>`}
    <div class="row"><button class="primary" onClick=${onBook} disabled=${result.busy}>${result.busy ? (waitlist ? "Joining…" : "Booking…") : waitlist ? "Join waitlist" : "Book appointment"}</button>
      <button onClick=${onBack}>Back</button></div>
  </section>`;
}

// ---- recurring series ----------------------------------------------------------------------------

const UNITS = { Daily: ["d", "days"], Weekly: ["wk", "weeks"], Monthly: ["mo", "months"] };
const DAY_NAMES = { mon: "Monday", tue: "Tuesday", wed: "Wednesday", thu: "Thursday", fri: "Friday", sat: "Saturday", sun: "Sunday" };

function Series({ client, patient, insurance, slot, schedule, facts, type, onBack, onAppointments }) {
  const minutes = Math.round((new Date(slot.end) - new Date(slot.start)) / 60000);
  const [settings, setSettings] = useState({
    kind: "Weekly", interval: 1, days: [weekdayOf(facts.date)], start: facts.date, time: localTime(slot.start, facts.tz),
    ends: "count", count: 6, until: "",
  });
  const [preview, setPreview] = useState(null); // {key, cards}
  const [state, setState] = useState({ busy: false, error: null, step: "settings", done: null });
  const key = JSON.stringify(settings);
  const set = (name, value) => setSettings({ ...settings, [name]: value });
  const timing = () => {
    const repeat = {
      boundsPeriod: { start: settings.start, ...(settings.ends === "date" ? { end: settings.until } : {}) },
      frequency: 1, period: Number(settings.interval), periodUnit: UNITS[settings.kind][0],
      timeOfDay: [`${settings.time}:00`], duration: minutes, durationUnit: "min",
      ...(settings.ends === "count" ? { count: Number(settings.count) } : {}),
      ...(settings.kind === "Weekly" ? { dayOfWeek: WEEKDAYS.filter((d) => settings.days.includes(d)) } : {}),
    };
    return { repeat };
  };
  const runPreview = async (event) => {
    event.preventDefault();
    setState({ ...state, busy: true, error: null });
    try {
      const parameters = [
        { name: "patient", valueReference: { reference: ref(patient) } },
        { name: "practitioner", valueReference: { reference: facts.provider.reference } },
        { name: "schedule", valueReference: { reference: ref(schedule) } },
        ...(type ? [{ name: "appointment-type", valueCoding: type }] : []),
        { name: "timing", valueTiming: timing() },
      ];
      const { json } = await client.request("POST", "Appointment/$find", { body: { resourceType: "Parameters", parameter: parameters } });
      const warnings = resources(json, "OperationOutcome").flatMap((o) => o.issue).filter((i) => i.severity === "warning");
      const cards = (json.entry || []).map((entry, index) => ({ entry, index })).filter(({ entry }) => entry.resource.resourceType === "Appointment")
        .map(({ entry, index }) => {
          const a = entry.resource;
          const at = a.start || a.requestedPeriod?.[0]?.start;
          const why = warnings.filter((w) => (w.expression || []).includes(`Bundle.entry[${index}].resource`)).map((w) => w.details?.text).join(" ");
          return { id: index, appointment: a, matched: Boolean(a.slot?.length), at, why };
        });
      setPreview({ key, cards });
      setState({ ...state, busy: false, error: null });
    } catch (error) {
      setState({ ...state, busy: false, error });
    }
  };
  const fresh = preview && preview.key === key && preview.cards.length > 0;
  const bookSeries = async () => {
    setState({ ...state, busy: true, error: null });
    try {
      const coverage = await coverageIds(client, patient, insurance);
      const parameter = [
        ...preview.cards.map((c) => ({ name: "appointment-resource", resource: c.appointment })),
        ...coverage.map((id) => ({ name: "coverage", valueReference: { reference: `Coverage/${id}` } })),
      ];
      const { json } = await client.request("POST", "Appointment/$book", { body: { resourceType: "Parameters", parameter } });
      const stored = resources(json, "Appointment");
      const booked = stored.filter((a) => a.status === "booked").length;
      setState({ busy: false, error: null, step: "done", done: { booked, drafts: stored.filter((a) => a.status === "proposed").length } });
    } catch (error) {
      setState({ ...state, busy: false, error });
    }
  };
  const when = (card) => `${formatDate(localDate(card.at, facts.tz))} ${formatTime(card.at, facts.tz)}`;
  if (state.step === "done")
    return html`<section class="card"><p class="notice" role="status" data-testid="series-result">Series saved for ${patientName(patient)}:
        ${state.done.booked} booked, ${state.done.drafts} saved as drafts.</p>
      ${state.done.drafts > 0 && html`<p>Resolve the drafts from the patient's appointments (Reschedule).</p>`}
      <button class="primary" onClick=${onAppointments}>View Patient Appointments</button></section>`;
  if (state.step === "review")
    return html`<section class="card" aria-labelledby="series-review-heading"><h3 id="series-review-heading">Review the series</h3>
      <p>${patientName(patient)} · ${facts.type} with ${facts.provider?.display} · ${preview.cards.filter((c) => c.matched).length} to book,
        ${preview.cards.filter((c) => !c.matched).length} to save as drafts.</p>
      <ul>${preview.cards.map((c) => html`<li key=${c.id}>${when(c)}${c.matched ? "" : " — draft (no session)"}</li>`)}</ul>
      <${ErrorBox} error=${state.error} />
      <div class="row"><button class="primary" disabled=${state.busy} onClick=${bookSeries}>${state.busy ? "Booking…" : "Book Appointment"}</button>
        <button onClick=${() => setState({ ...state, step: "settings" })}>Back</button></div></section>`;
  const unit = UNITS[settings.kind][1];
  return html`<section>
    <p>For ${patientName(patient)}: ${facts.type} with ${facts.provider?.display}.</p>
    <form class="card" onSubmit=${runPreview}>
      <fieldset class="plans"><legend><strong>Recurrence Settings</strong></legend>
        <fieldset class="plans"><legend>Recurrence Type</legend><div class="row">
          ${Object.keys(UNITS).map((k) => html`<label key=${k}><input type="radio" name="kind" checked=${settings.kind === k} onChange=${() => set("kind", k)} /> ${k}</label>`)}</div></fieldset>
        <div class="row">
          <div class="field"><label for="series-interval">Repeat every (${unit})</label><input id="series-interval" type="number" min="1" max="52" required value=${settings.interval} onInput=${(e) => set("interval", e.target.value)} /></div>
          <div class="field"><label for="series-start">First date</label><input id="series-start" type="date" required value=${settings.start} onInput=${(e) => set("start", e.target.value)} /></div>
          <div class="field"><label for="series-time">Time (${facts.tz})</label><input id="series-time" type="time" required value=${settings.time} onInput=${(e) => set("time", e.target.value)} /></div>
        </div>
        ${settings.kind === "Weekly" && html`<fieldset class="plans"><legend>Days of the week</legend><div class="row">
          ${WEEKDAYS.map((d) => html`<label key=${d}><input type="checkbox" name="weekday" value=${d} checked=${settings.days.includes(d)}
            onChange=${(e) => set("days", e.target.checked ? [...settings.days, d] : settings.days.filter((x) => x !== d))} /> ${DAY_NAMES[d]}</label>`)}</div></fieldset>`}
        <fieldset class="plans"><legend>Recurrence End</legend><div class="row">
          <label><input type="radio" name="ends" checked=${settings.ends === "count"} onChange=${() => set("ends", "count")} /> End after</label>
          <div class="field"><label for="series-count">Sessions</label><input id="series-count" type="number" min="1" max="366" value=${settings.count}
            disabled=${settings.ends !== "count"} onInput=${(e) => set("count", e.target.value)} /></div>
          <label><input type="radio" name="ends" checked=${settings.ends === "date"} onChange=${() => set("ends", "date")} /> End on a date</label>
          <div class="field"><label for="series-until">End date</label><input id="series-until" type="date" value=${settings.until}
            disabled=${settings.ends !== "date"} required=${settings.ends === "date"} onInput=${(e) => set("until", e.target.value)} /></div>
        </div></fieldset>
      </fieldset>
      <div class="row"><button type="submit" disabled=${state.busy}>${state.busy ? "Previewing…" : "Preview Recurrence"}</button>
        <button type="button" class="primary" disabled=${!fresh} aria-describedby="review-hint" onClick=${() => setState({ ...state, step: "review" })}>Review</button>
        <button type="button" onClick=${onBack}>Back to the booking form</button></div>
      <p id="review-hint" class="muted">${fresh ? `${preview.cards.length} occurrences ready to review.` : "Review becomes available once a preview matches these settings."}</p>
      <${ErrorBox} error=${state.error} />
    </form>
    ${preview && html`<section aria-labelledby="preview-heading"><h3 id="preview-heading">Occurrences${preview.key !== key ? " (settings changed: preview again)" : ""}</h3>
      ${preview.cards.length === 0 ? html`<p>All occurrences removed.</p>` : html`<ul class="occurrences">${preview.cards.map((c) => html`<li key=${c.id}
          class=${`occurrence${c.matched ? "" : " unmatched"}`} data-testid="occurrence">
        <strong>${!c.matched && html`<${WarnIcon} /><span class="visually-hidden">No session: </span>`} ${when(c)}</strong>
        <div>${c.matched ? "Session available" : html`<span class="why">${c.why || "No group session at this time: it will be saved as a draft."}</span>`}</div>
        <button onClick=${() => setPreview({ ...preview, cards: preview.cards.filter((x) => x.id !== c.id) })}
          aria-label=${`Remove the occurrence of ${when(c)}`}>Remove</button></li>`)}</ul>`}</section>`}
  </section>`;
}
