// The admin's Cognito ID token (from the sign-in page). It lives in sessionStorage: it ends
// with the tab, and no other site can read it. API Gateway's authorizer checks it on every
// admin call; the console only carries it. It expires after an hour: a 401 signs out.

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
