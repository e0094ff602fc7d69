// Signing in: the demo's staff users (only while the instance signs its own tokens), or
// the configured identity provider (OAuth 2.0 authorization code + PKCE, endpoints from
// /fhir/.well-known/smart-configuration).

import { BASE } from "./fhir.mjs";

const KEY = "fhir-facade.staff-session";
const PKCE_KEY = "fhir-facade.pkce";

export function storedSession() {
  try {
    const session = JSON.parse(sessionStorage.getItem(KEY) || "null");
    if (session && session.expiresAt > Date.now()) return session;
  } catch (err) {
    /* a damaged entry is the same as none */
  }
  return null;
}

export function saveSession(tokenResponse, user) {
  const session = {
    token: tokenResponse.access_token,
    scope: tokenResponse.scope || "",
    user,
    expiresAt: Date.now() + (tokenResponse.expires_in || 3600) * 1000,
  };
  sessionStorage.setItem(KEY, JSON.stringify(session));
  return session;
}

export const forgetSession = () => sessionStorage.removeItem(KEY);

export async function appConfig() {
  const response = await fetch(new URL("config.json", import.meta.url));
  if (!response.ok) throw new Error(`the app's configuration did not load (HTTP ${response.status})`);
  return response.json();
}

export async function demoUsers() {
  const response = await fetch(new URL("sign-in", import.meta.url), { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`the demo users did not load (HTTP ${response.status})`);
  return (await response.json()).users;
}

export async function demoSignIn(userId) {
  const response = await fetch(new URL("sign-in", import.meta.url), {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ user: userId }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body?.issue?.[0]?.details?.text || `sign-in refused (HTTP ${response.status})`);
  return saveSession(body, { name: body.user.name, role: body.user.role });
}

const base64url = (bytes) =>
  btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

async function smartConfiguration() {
  const response = await fetch(`${BASE}/.well-known/smart-configuration`, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!body.authorization_endpoint || !body.token_endpoint)
    throw new Error("the server's SMART configuration names no authorization and token endpoints");
  return body;
}

const redirectUri = () => new URL("./", import.meta.url).href;

/** Start the authorization code flow with PKCE (S256): off to the identity provider. */
export async function startIdpSignIn(config) {
  const smart = await smartConfiguration();
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state, tokenEndpoint: smart.token_endpoint }));
  const url = new URL(smart.authorization_endpoint);
  const params = {
    response_type: "code", client_id: config.clientId, redirect_uri: redirectUri(), scope: config.scope,
    state, code_challenge: challenge, code_challenge_method: "S256", aud: new URL(BASE, location.origin).href,
  };
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  location.assign(url.href);
}

/** Back from the identity provider with ?code&state: exchange the code for a token. */
export async function finishIdpSignIn(config) {
  const query = new URLSearchParams(location.search);
  if (!query.has("code") && !query.has("error")) return null;
  history.replaceState(null, "", location.pathname);
  if (query.has("error")) throw new Error(`the identity provider refused: ${query.get("error_description") || query.get("error")}`);
  const pending = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
  sessionStorage.removeItem(PKCE_KEY);
  if (!pending || pending.state !== query.get("state")) throw new Error("sign-in answer does not match the request; try again");
  const response = await fetch(pending.tokenEndpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams({
      grant_type: "authorization_code", code: query.get("code"), redirect_uri: redirectUri(),
      client_id: config.clientId, code_verifier: pending.verifier,
    }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(`the token request was refused: ${body.error_description || body.error || response.status}`);
  const claims = JSON.parse(atob(body.access_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  return saveSession(body, { name: claims.name || claims.sub, role: "Signed in through your identity provider" });
}
