// View Patient Appointments (booked, draft, waitlisted, offered, cancelled; cancel one, accept
// an offered place) and Reschedule: each
// draft gets a date, that day's sessions, "Use this slot", Review, Confirm edits.

import { html, useState } from "./vendor/htm-preact-standalone-3.1.1.mjs";
import {
  addDays, capacityOf, conceptText, formatDate, formatTime, isRestricted, localDate, offerExpiry, patientName, ref, resources,
  timezoneOf,
} from "./fhir.mjs";
import { ClosedIcon, ErrorBox, GroupIcon, Loading, LockIcon, WarnIcon, useLoad } from "./ui.mjs";

const LABELS = { booked: "Booked", proposed: "Draft", cancelled: "Cancelled", waitlist: "On the waitlist", pending: "Place offered" };
const when = (a) => a.start || a.requestedPeriod?.[0]?.start || "";
const practitionersOf = (a) => a.participant.filter((p) => p.actor?.reference?.startsWith("Practitioner/")).map((p) => p.actor);

function zoneFor(appointment, directory) {
  const loc = appointment.participant.find((p) => p.actor?.reference?.startsWith("Location/"))?.actor.reference;
  return timezoneOf(directory.locations.find((l) => ref(l) === loc) || directory.locations[0]);
}

function nameOf(reference, directory) {
  for (const s of directory.schedules) {
    const actor = s.actor.find((a) => a.reference === reference);
    if (actor?.display) return actor.display;
  }
  return reference;
}

function providerOf(scheduleRef, directory) {
  const schedule = directory.schedules.find((x) => ref(x) === scheduleRef);
  return schedule?.actor.find((a) => a.reference.startsWith("Practitioner/"))?.display || scheduleRef;
}

async function patientAppointments(client, patient) {
  const bundle = await client.search("Appointment", [["patient", ref(patient)], ["_count", "200"]]);
  return resources(bundle, "Appointment").sort((a, b) => when(a).localeCompare(when(b)));
}

/** PUT the appointment back changed, with If-Match on the version the user saw. */
async function update(client, appointment, changes) {
  const body = { ...appointment, ...changes };
  delete body.meta;
  const { json } = await client.request("PUT", `Appointment/${appointment.id}`, {
    body, headers: { "If-Match": `W/"${appointment.meta.versionId}"` },
  });
  return json;
}

export function PatientAppointments({ client, directory, patient, onBack, onReschedule }) {
  const list = useLoad(() => patientAppointments(client, patient), [patient.id]);
  const [confirming, setConfirming] = useState(null);
  const [state, setState] = useState({ busy: false, error: null, notice: null, at: null });
  const cancel = async (appointment) => {
    setState({ busy: true, error: null, notice: null, at: appointment.id });
    try {
      await update(client, appointment, { status: "cancelled", cancelationReason: { text: "cancelled by clinic staff" } });
      setConfirming(null);
      const notice = appointment.status === "waitlist" ? "The patient has left the waitlist."
        : "The appointment is cancelled; its place goes to the session's waitlist, or is free again.";
      setState({ busy: false, error: null, notice, at: null });
      list.reload();
    } catch (error) {
      setState({ busy: false, error, notice: null, at: appointment.id });
    }
  };
  const accept = async (appointment) => {
    setState({ busy: true, error: null, notice: null, at: appointment.id });
    try {
      await update(client, appointment, { status: "booked" });
      setState({ busy: false, error: null, notice: "The offer is accepted: the patient is booked into the session.", at: null });
      list.reload();
    } catch (error) {
      setState({ busy: false, error, notice: null, at: appointment.id });
      list.reload();
    }
  };
  const drafts = (list.data || []).filter((a) => a.status === "proposed");
  const cancellable = new Set(["booked", "proposed", "waitlist", "pending"]);
  return html`<main id="main">
    <h2 tabindex="-1">Appointments: ${isRestricted(patient) && html`<${LockIcon} /> `}${patientName(patient)}</h2>
    <p class="muted">DOB ${patient.birthDate || "—"}</p>
    <div class="row"><button onClick=${onBack}>Back to the calendar</button>
      <button class="primary" disabled=${drafts.length === 0} onClick=${onReschedule}>Reschedule${drafts.length ? ` (${drafts.length} drafts)` : ""}</button></div>
    ${state.notice && html`<p class="notice" role="status">${state.notice}</p>`}
    ${list.loading && html`<${Loading} what="appointments" />`}
    <${ErrorBox} error=${list.error} />
    ${list.data && (list.data.length === 0 ? html`<p>No appointments.</p>` : html`<table>
      <caption class="visually-hidden">Appointments of ${patientName(patient)}</caption>
      <thead><tr><th scope="col">When</th><th scope="col">Appointment type</th><th scope="col">Provider</th><th scope="col">Status</th><th scope="col">Actions</th></tr></thead>
      <tbody>${list.data.map((a) => {
        const tz = zoneFor(a, directory);
        return html`<tr key=${a.id} data-appointment=${a.id} data-status=${a.status}>
          <td>${when(a) ? `${formatDate(localDate(when(a), tz))} ${formatTime(when(a), tz)}` : "—"}</td>
          <td>${conceptText(a.appointmentType)}</td>
          <td>${practitionersOf(a).map((p) => nameOf(p.reference, directory)).join(", ")}</td>
          <td><span class=${`badge ${a.status}`}>${LABELS[a.status] || a.status}</span>${a.status === "pending" && offerExpiry(a)
            ? html`<br /><span class="muted">until ${formatDate(localDate(offerExpiry(a), tz))} ${formatTime(offerExpiry(a), tz)}</span>` : ""}</td>
          <td>${a.status === "pending" && html`<button class="primary" disabled=${state.busy} onClick=${() => accept(a)}>Accept offer<span class="visually-hidden"> of ${when(a)}</span></button> `}
            ${cancellable.has(a.status) && (confirming === a.id
            ? html`<button class="primary" disabled=${state.busy} onClick=${() => cancel(a)}>Yes, cancel it</button> <button onClick=${() => setConfirming(null)}>Keep it</button>`
            : html`<button onClick=${() => setConfirming(a.id)}>${a.status === "waitlist" ? "Leave waitlist" : a.status === "pending" ? "Decline offer" : "Cancel appointment"}<span class="visually-hidden"> of ${when(a)}</span></button>`)}
            ${state.at === a.id && html`<${ErrorBox} error=${state.error} />`}</td>
        </tr>`;
      })}</tbody></table>`)}
  </main>`;
}

function DraftEditor({ client, directory, draft, onResolved }) {
  const tz = zoneFor(draft, directory);
  const intended = draft.requestedPeriod?.[0]?.start;
  const [day, setDay] = useState(intended ? localDate(intended, tz) : "");
  const [chosen, setChosen] = useState(null);
  const [step, setStep] = useState("pick"); // pick | review
  const [state, setState] = useState({ busy: false, error: null });
  const practitioner = practitionersOf(draft)[0]?.reference;
  const schedules = directory.schedules.filter((s) => !practitioner || s.actor.some((a) => a.reference === practitioner));
  const sessions = useLoad(async () => {
    if (!day || !schedules.length) return [];
    const bundle = await client.search("Slot", [
      ["schedule", schedules.map(ref).join(",")], ["start", `ge${addDays(day, -1)}`], ["start", `lt${addDays(day, 2)}`],
    ]);
    return resources(bundle, "Slot").filter((s) => localDate(s.start, tz) === day).sort((a, b) => a.start.localeCompare(b.start));
  }, [day]);
  const confirm = async () => {
    setState({ busy: true, error: null });
    try {
      const participant = draft.participant.map((p) => ({ ...p, status: "accepted" }));
      const booked = await update(client, draft, {
        status: "booked", slot: [{ reference: ref(chosen) }], start: chosen.start, end: chosen.end, participant,
      });
      onResolved(booked, chosen);
    } catch (error) {
      setState({ busy: false, error });
    }
  };
  const label = `${intended ? `${formatDate(localDate(intended, tz))} ${formatTime(intended, tz)}` : "no date"}`;
  return html`<details class="card" data-draft=${draft.id} open>
    <summary><${WarnIcon} /> Draft: ${conceptText(draft.appointmentType)} · intended ${label}</summary>
    ${step === "pick" ? html`
      <div class="field"><label for=${`draft-date-${draft.id}`}>Date for this occurrence</label>
        <input id=${`draft-date-${draft.id}`} type="date" value=${day} onInput=${(e) => { setDay(e.target.value); setChosen(null); }} /></div>
      ${sessions.loading && html`<${Loading} what="that day's sessions" />`}
      <${ErrorBox} error=${sessions.error} />
      ${sessions.data && (sessions.data.length === 0 ? html`<p>No sessions on ${formatDate(day)}. Pick another date.</p>` : html`
        <ul class="results" aria-label=${`Sessions on ${formatDate(day)}`}>${sessions.data.map((s) => {
          const { booked, capacity } = capacityOf(s);
          const full = booked >= capacity || s.status === "busy-unavailable";
          return html`<li key=${s.id}><div class="row">
            <span><${GroupIcon} /> ${conceptText(s.appointmentType)} · ${formatTime(s.start, tz)} · ${providerOf(s.schedule.reference, directory)}
              · <span class="count">${booked}/${capacity}</span>${s.extension?.some((e) => e.valueBoolean && e.url.endsWith("closed-session")) ? html` <${ClosedIcon} />` : ""}${full ? " · Full" : ""}</span>
            <button disabled=${full} aria-pressed=${chosen?.id === s.id} data-slot=${s.id} onClick=${() => setChosen(s)}>Use this slot<span class="visually-hidden"> at ${formatTime(s.start, tz)}</span></button></div></li>`;
        })}</ul>`)}
      ${chosen && html`<p role="status">Chosen: ${conceptText(chosen.appointmentType)} on ${formatDate(localDate(chosen.start, tz))} at ${formatTime(chosen.start, tz)}.</p>`}
      <button class="primary" disabled=${!chosen} onClick=${() => setStep("review")}>Review</button>`
    : html`<dl class="facts"><dt>Session</dt><dd>${conceptText(chosen.appointmentType)}</dd>
        <dt>Date</dt><dd>${formatDate(localDate(chosen.start, tz))}</dd><dt>Time</dt><dd>${formatTime(chosen.start, tz)} – ${formatTime(chosen.end, tz)}</dd></dl>
      <${ErrorBox} error=${state.error} />
      <div class="row"><button class="primary" disabled=${state.busy} onClick=${confirm}>${state.busy ? "Saving…" : "Confirm edits"}</button>
        <button onClick=${() => setStep("pick")}>Back</button></div>`}
  </details>`;
}

export function Reschedule({ client, directory, patient, onBack }) {
  const list = useLoad(() => patientAppointments(client, patient), [patient.id]);
  const [resolved, setResolved] = useState([]);
  const drafts = (list.data || []).filter((a) => a.status === "proposed" && !resolved.some((r) => r.id === a.id));
  return html`<main id="main">
    <h2 tabindex="-1">Edit Appointment: drafts of ${patientName(patient)}</h2>
    <button onClick=${onBack}>Back to the patient's appointments</button>
    ${resolved.map((r) => html`<p class="notice" role="status" key=${r.id}>Booked: ${conceptText(r.appointmentType)} on ${r.when}. It is no longer a draft.</p>`)}
    ${list.loading && html`<${Loading} what="drafts" />`}
    <${ErrorBox} error=${list.error} />
    ${list.data && drafts.length === 0 && html`<p>No drafts left.</p>`}
    ${drafts.map((d) => html`<${DraftEditor} key=${d.id} client=${client} directory=${directory} draft=${d}
      onResolved=${(booked, slot) => setResolved([...resolved, { ...booked, when: `${formatDate(localDate(slot.start, zoneFor(d, directory)))} ${formatTime(slot.start, zoneFor(d, directory))}` }])} />`)}
  </main>`;
}
