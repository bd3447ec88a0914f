// The schedule field: <input type="datetime-local"> holds a wall-clock time in the browser's
// time zone; the API wants ISO 8601 with the zone's offset.

function pad(number, width = 2) {
  return String(Math.abs(Math.trunc(number))).padStart(width, "0");
}

/** "+02:00" for a Date, from the browser's time zone at that instant (DST included). */
export function offsetOf(date) {
  const minutes = -date.getTimezoneOffset();
  const sign = minutes >= 0 ? "+" : "-";
  return `${sign}${pad(Math.floor(Math.abs(minutes) / 60))}:${pad(Math.abs(minutes) % 60)}`;
}

/** A datetime-local value ("2026-05-01T10:00") -> "2026-05-01T10:00:00+02:00", or null. */
export function isoWithOffset(value) {
  if (!value) return null;
  const date = new Date(value); // a date-time without an offset is local time
  if (Number.isNaN(date.getTime())) return null;
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return `${day}T${time}${offsetOf(date)}`;
}

/** An ISO time from the API -> the datetime-local value for it in the browser's zone. */
export function localInputValue(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** "Europe/Berlin (UTC+02:00)": the browser's time zone, for the schedule's hint. */
export function zoneDescription(date = new Date()) {
  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (ignored) {
    zone = "";
  }
  const offset = `UTC${offsetOf(date)}`;
  return zone ? `${zone} (${offset})` : offset;
}
