// Pieces every screen shares: icons, loading and error states, a loader hook, and what a
// session tile says.

import { html, useEffect, useState } from "./vendor/htm-preact-standalone-3.1.1.mjs";
import { capacityOf, conceptText, formatTime, isClosed, localDate, ref, timezoneOf } from "./fhir.mjs";

export const SCHEDULE_MANAGE = "__schedule.manage";

export const GroupIcon = () => html`<svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false"><circle cx="8" cy="8" r="3.2" fill="currentColor"/><circle cx="16.5" cy="8.5" r="2.7" fill="currentColor"/><path d="M2 19c0-3.3 2.7-6 6-6s6 2.7 6 6z" fill="currentColor"/><path d="M13.5 19c.2-2.2-.6-4.2-2-5.5 1.3-.9 3-1.1 4.6-.6 2.6.8 4.3 3.3 4.3 6.1z" fill="currentColor"/></svg>`;
export const ClosedIcon = () => html`<span class="closed" title="Closed session"><svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false"><circle cx="12" cy="12" r="9" fill="none" stroke="currentColor" stroke-width="2.5"/><path d="M7 12h10" stroke="currentColor" stroke-width="2.5"/></svg><span class="visually-hidden">Closed session</span></span>`;
export const LockIcon = () => html`<span class="lock" title="Restricted patient"><svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false"><rect x="5" y="10" width="14" height="11" rx="2" fill="currentColor"/><path d="M8 10V7a4 4 0 0 1 8 0v3" fill="none" stroke="currentColor" stroke-width="2.2"/></svg><span class="visually-hidden">Restricted patient</span></span>`;
export const WarnIcon = () => html`<svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M12 2 1 21h22z" fill="#e0a800" stroke="#6b4e00" stroke-width="1.2"/><path d="M12 9v6M12 17.5v1" stroke="#1b2430" stroke-width="2.2"/></svg>`;

export const Loading = ({ what }) => html`<p class="status" role="status">Loading ${what}…</p>`;
export const ErrorBox = ({ error }) => (error ? html`<div class="error" role="alert">${error.message || String(error)}</div>` : null);

/** Run an async loader when `deps` change; gives {data, error, loading, reload}. Until the
 * answer for the current deps arrives, `loading` is true and `data` is null. */
export function useLoad(loader, deps) {
  const [state, setState] = useState({ data: null, error: null, deps: null });
  const [tick, setTick] = useState(0);
  const current = [...deps, tick];
  useEffect(() => {
    let live = true;
    loader().then(
      (data) => live && setState({ data, error: null, deps: current }),
      (error) => live && setState({ data: null, error, deps: current }),
    );
    return () => { live = false; };
  }, current);
  const fresh = state.deps && state.deps.length === current.length && state.deps.every((d, i) => d === current[i]);
  if (!fresh) return { data: null, error: null, loading: true, reload: () => setTick((t) => t + 1) };
  return { data: state.data, error: state.error, loading: false, reload: () => setTick((t) => t + 1) };
}

export function sessionFacts(slot, schedule, directory) {
  const departmentRef = schedule.actor.find((a) => a.reference.startsWith("Location/"))?.reference;
  const department = directory.locations.find((l) => ref(l) === departmentRef);
  const tz = timezoneOf(department);
  const provider = schedule.actor.find((a) => a.reference.startsWith("Practitioner/"));
  return {
    tz, department, provider,
    date: localDate(slot.start, tz),
    time: `${formatTime(slot.start, tz)} – ${formatTime(slot.end, tz)}`,
    type: conceptText(slot.appointmentType),
    ...capacityOf(slot),
    closed: isClosed(slot),
    unavailable: slot.status === "busy-unavailable",
  };
}

