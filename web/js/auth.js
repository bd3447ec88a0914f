// The admin's bearer token. It lives in sessionStorage: it ends with the tab, and no other
// site can read it. The API checks it (issue #7 adds Cognito); the console only carries it.

const KEY = "mailroom.admin.token";

export function getToken() {
  try {
    return sessionStorage.getItem(KEY) || "";
  } catch (ignored) {
    return "";
  }
}

export function setToken(token) {
  sessionStorage.setItem(KEY, token);
}

export function signOut() {
  try {
    sessionStorage.removeItem(KEY);
  } catch (ignored) {
    // storage unavailable: nothing was kept
  }
}

export function signedIn() {
  return getToken() !== "";
}
