// Talks to the api service through the Dockhand proxy (same origin, paths under /api).
"use strict";

const $ = (id) => document.getElementById(id);

async function api(method, path) {
  const response = await fetch(path, { method, headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${method} ${path} answered ${response.status}`);
  return response.json();
}

function showError(err) {
  $("error").textContent = `${err.message}; is the api service running? (dockhand status)`;
  $("error").hidden = false;
}

function showVisits(data) {
  $("count").textContent = data.count;
  $("pid").textContent = data.pid;
  $("error").hidden = true;
}

async function load() {
  try {
    const info = await api("GET", "/api/info");
    $("greeting").textContent = info.greeting;
    $("release").textContent = info.release ?? "(not deployed by dockhand)";
    showVisits(await api("GET", "/api/visits"));
  } catch (err) {
    showError(err);
  }
}

$("visit").addEventListener("click", async () => {
  $("visit").disabled = true;
  try {
    showVisits(await api("POST", "/api/visits"));
  } catch (err) {
    showError(err);
  } finally {
    $("visit").disabled = false;
  }
});

load();
