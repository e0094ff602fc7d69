// The staff scheduling app: the clinic's booking workflow, screen by screen, on the
// public FHIR API alone (see ../README.md, "Staff app").

import { html, render, useEffect, useMemo, useRef, useState } from "./vendor/htm-preact-standalone-3.1.1.mjs";
import {
  Client, addDays, formatDate, formatTime, isRestricted, localDate, mondayOf, offerExpiry, patientName, ref, resources,
  timezoneOf, todayIn,
} from "./fhir.mjs";
import { ClosedIcon, ErrorBox, GroupIcon, Loading, LockIcon, SCHEDULE_MANAGE, sessionFacts, useLoad } from "./ui.mjs";
import { appConfig, demoSignIn, demoUsers, finishIdpSignIn, forgetSession, startIdpSignIn, storedSession } from "./signin.mjs";
import { BookAppointment } from "./booking.mjs";
import { PatientAppointments, Reschedule } from "./appointments.mjs";

// ---- sign-in ------------------------------------------------------------------------------

function SignIn({ onSignedIn }) {
  const config = useLoad(appConfig, []);
  const demo = config.data?.signIn === "demo";
  const users = useLoad(() => (demo ? demoUsers() : Promise.resolve([])), [demo]);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(null);
  useEffect(() => {
    if (config.data && !demo) finishIdpSignIn(config.data).then((s) => s && onSignedIn(s), setError);
  }, [config.data]);
  const choose = async (user) => {
    setBusy(user.id);
    setError(null);
    try { onSignedIn(await demoSignIn(user.id)); } catch (err) { setError(err); setBusy(null); }
  };
  return html`<main id="main">
    <h2>Sign in</h2>
    ${config.loading && html`<${Loading} what="sign-in options" />`}
    <${ErrorBox} error=${config.error || users.error || error} />
    ${demo && html`<p>Demo clinic: sign in as one of its staff. Each has different permissions.</p>
      ${users.loading && html`<${Loading} what="staff users" />`}
      <ul class="results">${(users.data || []).map((u) => html`<li key=${u.id}>
        <button class="signin" onClick=${() => choose(u)} disabled=${busy !== null}>
          <strong>${u.name}</strong> — ${u.role}${busy === u.id ? " (signing in…)" : ""}
        </button></li>`)}</ul>`}
    ${config.data && !demo && html`<p>Sign in with your organisation's account.</p>
      <button class="primary" onClick=${() => startIdpSignIn(config.data).catch(setError)}>Sign in with your identity provider</button>`}
  </main>`;
}

// ---- calendar -------------------------------------------------------------------------------

// The first week view's sessions are asked for as soon as the directory answers, without
// waiting for the calendar to render; the calendar takes that answer once, then asks anew.
const prefetched = new Map();

const weekQuery = (client, schedule, week) =>
  client.search("Slot", [
    ["schedule", ref(schedule)], ["start", `ge${addDays(week, -1)}`], ["start", `lt${addDays(week, 8)}`], ["_count", "500"],
  ]).then((bundle) => resources(bundle, "Slot"));

function prefetchWeek(client, schedule, week) {
  const answer = weekQuery(client, schedule, week);
  answer.catch(() => {}); // a failure shows when the calendar takes it
  prefetched.set(`${schedule.id}|${week}`, answer);
}

function slotsOfWeek(client, schedule, week) {
  const key = `${schedule.id}|${week}`;
  const answer = prefetched.get(key);
  prefetched.delete(key);
  return answer || weekQuery(client, schedule, week);
}

function firstSchedule(directory) {
  const department = directory.locations[0];
  return directory.schedules.find((s) => s.actor.some((a) => a.reference === ref(department)));
}

async function loadDirectory(client) {
  // All at once: the first week view waits for these and then for one Slot search.
  const [locations, schedules, practitioners, organizations] = await Promise.all([
    client.search("Location", [["_count", "100"]]),
    client.search("Schedule", [["active", "true"], ["_count", "200"]]),
    client.search("Practitioner", [["_count", "200"]]),
    client.search("Organization", [["_count", "200"]]),
  ]);
  const directory = {
    locations: resources(locations, "Location"),
    schedules: resources(schedules, "Schedule").sort((a, b) => (a.actor[0].display || "").localeCompare(b.actor[0].display || "")),
    practitioners: resources(practitioners, "Practitioner"),
    organizations: resources(organizations, "Organization"),
  };
  const schedule = firstSchedule(directory);
  if (schedule) prefetchWeek(client, schedule, mondayOf(todayIn(timezoneOf(directory.locations[0]))));
  return directory;
}

function Tile({ slot, facts, selected, onSelect }) {
  const full = facts.booked >= facts.capacity;
  const cls = `tile${full ? " full" : ""}${facts.unavailable ? " unavailable" : ""}`;
  return html`<button class=${cls} aria-pressed=${selected} data-slot=${slot.id} onClick=${() => onSelect(slot)}>
    <span class="kind"><${GroupIcon} /><span class="visually-hidden">Group session: </span> ${facts.type}</span>
    <span>${facts.time}</span><br />
    <span class="count">${facts.booked}/${facts.capacity}</span><span class="visually-hidden"> booked</span>
    ${facts.closed && html` <${ClosedIcon} />`}
    ${full && !facts.unavailable && html`<span class="tag">Full</span>`}
    ${facts.unavailable && html`<span class="tag">Unavailable</span>`}
  </button>`;
}

/** The session's entries with status `status`, in the server's (queue) order, each with its patient. */
async function entriesOf(client, slot, status) {
  const bundle = await client.search("Appointment", [["slot", ref(slot)], ["status", status], ["_include", "Appointment:patient"], ["_count", "100"]]);
  const patients = Object.fromEntries(resources(bundle, "Patient").map((p) => [ref(p), p]));
  return resources(bundle, "Appointment").map((a) => ({ appointment: a, patient: patients[a.participant[0].actor.reference] }));
}

function Waiting({ entries, label, describe, onAppointments, empty }) {
  if (entries.length === 0) return html`<p class="muted">${empty}</p>`;
  const List = label === "Waitlist" ? "ol" : "ul";
  return html`<${List} class="results" aria-label=${label}>
    ${entries.map(({ appointment, patient }, index) => html`<li key=${appointment.id} data-appointment=${appointment.id}>
      <button onClick=${() => onAppointments(patient)}>${List === "ol" ? `${index + 1}. ` : ""}${isRestricted(patient) && html`<${LockIcon} /> `}${patientName(patient)}${` · ${describe(appointment)}`}<span class="visually-hidden"> (view patient appointments)</span></button></li>`)}
  </${List}>`;
}

function SessionDetails({ client, slot, schedule, directory, onBook, onWaitlist, onAppointments, onClose }) {
  const facts = sessionFacts(slot, schedule, directory);
  const heading = useRef(null);
  useEffect(() => heading.current?.focus(), [slot.id]);
  const booked = useLoad(async () => {
    const bundle = await client.search("Appointment", [["slot", ref(slot)], ["status", "booked"], ["_include", "Appointment:patient"], ["_count", "100"]]);
    return resources(bundle, "Patient");
  }, [slot.id, slot.meta?.versionId]);
  const waiting = useLoad(async () => {
    const [queue, offers] = await Promise.all([entriesOf(client, slot, "waitlist"), entriesOf(client, slot, "pending")]);
    return { queue, offers };
  }, [slot.id, slot.meta?.versionId]);
  const full = facts.booked >= facts.capacity;
  const expiry = (a) => {
    const at = offerExpiry(a);
    return at ? `offer expires ${formatDate(localDate(at, facts.tz))} ${formatTime(at, facts.tz)}` : "offer pending";
  };
  return html`<aside class="card" aria-labelledby="details-heading">
    <h3 id="details-heading" tabindex="-1" ref=${heading}><${GroupIcon} /> ${facts.type}</h3>
    <dl class="facts">
      <dt>Provider</dt><dd>${facts.provider?.display}</dd>
      <dt>Department</dt><dd>${facts.department?.name}</dd>
      <dt>Date</dt><dd>${formatDate(facts.date)}</dd>
      <dt>Time</dt><dd>${facts.time}</dd>
      <dt>Booked</dt><dd><span class="count" data-testid="details-count">${facts.booked}/${facts.capacity}</span></dd>
    </dl>
    ${facts.closed && html`<p class="warning"><${ClosedIcon} /> Closed session: the provider prefers no new patients once the group has started. Booking is still possible.</p>`}
    ${facts.unavailable && html`<p class="warning">This session is unavailable.</p>`}
    ${full && !facts.unavailable && html`<p class="warning">This session is full. Patients can join its waitlist: a place that frees goes to the first of them.</p>`}
    <div class="row">
      <button class="primary" onClick=${() => onBook(slot, schedule)} disabled=${full || facts.unavailable}>Book Appointment</button>
      ${full && !facts.unavailable && html`<button class="primary" onClick=${() => onWaitlist(slot, schedule)}>Join waitlist</button>`}
      <button onClick=${onClose}>Close</button>
    </div>
    <h4>Booked patients you can see</h4>
    ${booked.loading && html`<${Loading} what="booked patients" />`}
    <${ErrorBox} error=${booked.error} />
    ${booked.data && (booked.data.length === 0 ? html`<p class="muted">None.</p>` : html`<ul class="results" aria-label="Booked patients">
      ${booked.data.map((p) => html`<li key=${p.id}><button onClick=${() => onAppointments(p)}>
        ${isRestricted(p) && html`<${LockIcon} /> `}${patientName(p)} · DOB ${p.birthDate || "—"}<span class="visually-hidden"> (view patient appointments)</span></button></li>`)}
    </ul>`)}
    <h4>Waitlist, in order</h4>
    ${waiting.loading && html`<${Loading} what="the waitlist" />`}
    <${ErrorBox} error=${waiting.error} />
    ${waiting.data && html`<${Waiting} entries=${waiting.data.queue} label="Waitlist" onAppointments=${onAppointments} empty="Nobody is waiting."
        describe=${(a) => (a.priority ? `priority ${a.priority}` : `joined ${formatDate(localDate(a.created, facts.tz))}`)} />`}
    <h4>Offers pending</h4>
    ${waiting.data && html`<${Waiting} entries=${waiting.data.offers} label="Pending offers" onAppointments=${onAppointments} empty="No offer is pending."
        describe=${expiry} />`}
  </aside>`;
}

function Calendar({ client, directory, view, setView, onBook, onWaitlist, onAppointments }) {
  const departments = directory.locations;
  const department = departments.find((d) => d.id === view.departmentId) || departments[0];
  const tz = timezoneOf(department);
  const week = view.week || mondayOf(todayIn(tz));
  const schedules = directory.schedules.filter((s) => s.actor.some((a) => a.reference === ref(department)));
  const schedule = schedules.find((s) => s.id === view.scheduleId) || schedules[0];
  const slots = useLoad(async () => (schedule ? slotsOfWeek(client, schedule, week) : []), [schedule?.id, week, view.refresh]);
  const days = [...Array(7).keys()].map((i) => addDays(week, i));
  const today = todayIn(tz);
  const selected = slots.data?.find((s) => s.id === view.slotId);
  const tabs = useRef(null);
  const onTabKey = (event) => {
    const i = schedules.indexOf(schedule);
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const next = schedules[(i + step + schedules.length) % schedules.length];
    setView({ ...view, scheduleId: next.id, slotId: null });
    setTimeout(() => tabs.current?.querySelector(`[data-schedule="${next.id}"]`)?.focus());
  };
  return html`<main id="main">
    <h2>Calendar</h2>
    <div class="toolbar">
      ${departments.length > 1 && html`<div><label for="department">Department</label>
        <select id="department" value=${department.id} onChange=${(e) => setView({ departmentId: e.target.value, week: null, scheduleId: null, slotId: null })}>
          ${departments.map((d) => html`<option value=${d.id}>${d.name}</option>`)}</select></div>`}
      <div><label for="week-date">Show the week of</label>
        <input id="week-date" type="date" value=${week} onChange=${(e) => e.target.value && setView({ ...view, week: mondayOf(e.target.value), slotId: null })} /></div>
      <button onClick=${() => setView({ ...view, week: addDays(week, -7), slotId: null })}>Previous week</button>
      <button onClick=${() => setView({ ...view, week: mondayOf(today), slotId: null })}>This week</button>
      <button onClick=${() => setView({ ...view, week: addDays(week, 7), slotId: null })}>Next week</button>
    </div>
    <div role="tablist" aria-label="Provider schedules" ref=${tabs} onKeyDown=${onTabKey}>
      ${schedules.map((s) => html`<button role="tab" id=${`tab-${s.id}`} data-schedule=${s.id} aria-selected=${s === schedule} aria-controls="week-panel"
          tabindex=${s === schedule ? 0 : -1} onClick=${() => setView({ ...view, scheduleId: s.id, slotId: null })}>
        ${s.actor.find((a) => a.reference.startsWith("Practitioner/"))?.display || s.comment || s.id}</button>`)}
    </div>
    <div class="layout">
      <section id="week-panel" role="tabpanel" aria-labelledby=${schedule ? `tab-${schedule.id}` : undefined} aria-busy=${slots.loading}>
        <h3 class="visually-hidden">Week of ${formatDate(week)}</h3>
        ${slots.loading && html`<${Loading} what="the week's sessions" />`}
        <${ErrorBox} error=${slots.error} />
        ${!schedule && html`<p>No provider schedules in this department.</p>`}
        <div class="week">${days.map((day) => {
          const daySlots = (slots.data || []).filter((s) => localDate(s.start, tz) === day).sort((a, b) => a.start.localeCompare(b.start));
          return html`<div class=${`day${day === today ? " today" : ""}`} key=${day} data-day=${day}>
            <h3>${formatDate(day, { weekday: "short", month: "short", day: "numeric" })}${day === today ? html`<span class="visually-hidden"> (today)</span>` : ""}</h3>
            ${daySlots.map((slot) => html`<${Tile} key=${slot.id} slot=${slot} facts=${sessionFacts(slot, schedule, directory)}
                selected=${slot.id === view.slotId} onSelect=${(s) => setView({ ...view, slotId: s.id })} />`)}
          </div>`;
        })}</div>
      </section>
      ${selected && html`<${SessionDetails} client=${client} slot=${selected} schedule=${schedule} directory=${directory}
          onBook=${onBook} onWaitlist=${onWaitlist} onAppointments=${onAppointments} onClose=${() => setView({ ...view, slotId: null })} />`}
    </div>
  </main>`;
}

// ---- the app ----------------------------------------------------------------------------------

function App() {
  const [session, setSession] = useState(storedSession);
  const [screen, setScreen] = useState({ name: "calendar" });
  const [view, setView] = useState({ refresh: 0 });
  const client = useMemo(() => session && new Client(session.token, () => { forgetSession(); setSession(null); }), [session]);
  const directory = useLoad(() => (client ? loadDirectory(client) : Promise.resolve(null)), [client]);
  const signOut = () => { forgetSession(); setSession(null); setScreen({ name: "calendar" }); setView({ refresh: 0 }); };
  useEffect(() => { document.querySelector("main h2")?.focus?.(); }, [screen.name]);

  const header = html`<header class="top">
    <h1>Harbor group sessions</h1>
    ${session && html`<span class="who">Signed in as <strong>${session.user.name}</strong> (${session.user.role})</span>
      <button onClick=${signOut}>Sign out</button>`}
  </header>`;
  if (!session) return html`${header}<${SignIn} onSignedIn=${setSession} />`;
  if (directory.loading || directory.error) return html`${header}<main id="main"><h2>Calendar</h2>
    ${directory.loading && html`<${Loading} what="the clinic's calendars" />`}<${ErrorBox} error=${directory.error} /></main>`;

  const canManage = session.scope.split(/\s+/).includes(SCHEDULE_MANAGE);
  const toCalendar = (slot, week) => {
    setView((v) => ({ ...v, refresh: v.refresh + 1, ...(slot ? { slotId: slot.id, week } : {}) }));
    setScreen({ name: "calendar" });
  };
  const onAppointments = (patient) => setScreen({ name: "appointments", patient });
  const props = { client, directory: directory.data, canManage };
  let body;
  if (screen.name === "book")
    body = html`<${BookAppointment} ...${props} slot=${screen.slot} schedule=${screen.schedule} waitlist=${screen.waitlist}
      onDone=${toCalendar} onAppointments=${onAppointments} />`;
  else if (screen.name === "appointments")
    body = html`<${PatientAppointments} ...${props} patient=${screen.patient} onBack=${() => toCalendar()}
      onReschedule=${() => setScreen({ name: "reschedule", patient: screen.patient })} />`;
  else if (screen.name === "reschedule")
    body = html`<${Reschedule} ...${props} patient=${screen.patient} onBack=${() => onAppointments(screen.patient)} />`;
  else
    body = html`<${Calendar} ...${props} view=${view} setView=${setView}
      onBook=${(slot, schedule) => setScreen({ name: "book", slot, schedule })}
      onWaitlist=${(slot, schedule) => setScreen({ name: "book", slot, schedule, waitlist: true })} onAppointments=${onAppointments} />`;
  return html`${header}${body}`;
}

render(html`<${App} />`, document.getElementById("root"));
