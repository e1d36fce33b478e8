// Passkeys and security keys (WebAuthn) on the MFA pages: an element with
// data-webauthn="register" (a form with a name field) or "login" runs the
// ceremony. It asks data-begin for the options (JSON from go-webauthn),
// lets the browser talk to the authenticator, posts the answer
// (PublicKeyCredential.toJSON) to data-finish and follows the redirect it
// names; a refusal is shown in the element's data-webauthn-error.
// The browser's own JSON parsers (parseCreationOptionsFromJSON and
// parseRequestOptionsFromJSON) do the base64url work: no helper library.
import './mfa.css';

interface Answer { redirect?: string; error?: string }

async function post(url: string, body: BodyInit | null, type: string): Promise<unknown> {
  const resp = await fetch(url, {
    method: 'POST', body, credentials: 'same-origin',
    headers: { 'Content-Type': type, Accept: 'application/json' },
  });
  let data: unknown = null;
  try {
    data = await resp.json();
  } catch {
    throw new Error(`The portal answered ${resp.status} ${resp.statusText}.`);
  }
  if (!resp.ok) {
    const msg = (data as Answer | null)?.error;
    throw new Error(msg || `The portal answered ${resp.status} ${resp.statusText}.`);
  }
  return data;
}

// words turns the browser's WebAuthn errors into what the user can do.
function words(err: unknown): string {
  if (err instanceof DOMException) {
    switch (err.name) {
      case 'NotAllowedError':
        return 'The passkey prompt was cancelled or timed out. Try again.';
      case 'InvalidStateError':
        return 'This authenticator is already registered for your account.';
      case 'SecurityError':
        return 'The browser refused passkeys on this address (it needs HTTPS and the portal\'s own host name).';
      case 'NotSupportedError':
        return 'This browser or authenticator does not support passkeys.';
    }
  }
  return err instanceof Error ? err.message : String(err);
}

function supported(): boolean {
  const pkc = window.PublicKeyCredential as (typeof PublicKeyCredential & {
    parseCreationOptionsFromJSON?: unknown; parseRequestOptionsFromJSON?: unknown;
  }) | undefined;
  return !!pkc && typeof pkc.parseCreationOptionsFromJSON === 'function' &&
    typeof pkc.parseRequestOptionsFromJSON === 'function' && !!navigator.credentials;
}

async function ceremony(el: HTMLElement): Promise<void> {
  const begin = el.dataset.begin!;
  const finish = el.dataset.finish!;
  let cred: Credential | null;
  if (el.dataset.webauthn === 'register') {
    const form = el as HTMLFormElement;
    const body = new URLSearchParams();
    for (const [k, v] of new FormData(form)) body.append(k, String(v));
    const opts = await post(begin, body, 'application/x-www-form-urlencoded') as { publicKey: PublicKeyCredentialCreationOptionsJSON };
    cred = await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(opts.publicKey) });
  } else {
    const opts = await post(begin, null, 'application/json') as { publicKey: PublicKeyCredentialRequestOptionsJSON };
    cred = await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts.publicKey) });
  }
  if (!(cred instanceof PublicKeyCredential)) throw new Error('The browser returned no passkey.');
  const answer = await post(finish, JSON.stringify(cred.toJSON()), 'application/json') as Answer;
  window.location.assign(answer.redirect || '/');
}

function wire(el: HTMLElement): void {
  const button = el.querySelector<HTMLButtonElement>('[data-webauthn-start]');
  const errEl = el.querySelector<HTMLElement>('[data-webauthn-error]');
  if (!button) return;
  const fail = (msg: string) => {
    if (errEl) {
      errEl.textContent = msg;
      errEl.hidden = false;
    }
  };
  if (!supported()) {
    button.disabled = true;
    fail('This browser does not support passkeys here. Use an authenticator app or a recovery code.');
    return;
  }
  const run = async (ev: Event) => {
    ev.preventDefault();
    if (button.disabled) return;
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    if (errEl) errEl.hidden = true;
    try {
      await ceremony(el);
    } catch (err) {
      fail(words(err));
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  };
  if (el instanceof HTMLFormElement) el.addEventListener('submit', run);
  else button.addEventListener('click', run);
}

document.querySelectorAll<HTMLElement>('[data-webauthn]').forEach(wire);
