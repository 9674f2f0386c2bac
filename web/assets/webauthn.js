// caddy-stepup: the browser side of WebAuthn step-up and key registration.
// Served from the module's own assets (the pages allow no inline script).
// The element #webauthn carries data-mode (login|register), data-begin and
// data-finish; the CSRF token comes from <meta name="csrf-token">.
(function () {
  'use strict';
  var box = document.getElementById('webauthn');
  if (!box) { return; }
  var button = document.getElementById('webauthn-start');
  var status = document.getElementById('webauthn-status');
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.content : '';

  // The page gives the words, in its language (data-msg-*).
  function text(key, fallback) {
    return box.getAttribute('data-msg-' + key) || fallback;
  }

  function say(msg) {
    status.textContent = msg;
    status.hidden = false;
  }

  if (!window.PublicKeyCredential || !navigator.credentials) {
    say(text('unsupported', 'This browser cannot use security keys (WebAuthn). Use a current browser, or ask your administrator.'));
    button.disabled = true;
    return;
  }

  // base64url <-> ArrayBuffer, for browsers without the JSON helpers.
  function decode(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) { s += '='; }
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }
  function encode(buf) {
    var bytes = new Uint8Array(buf);
    var s = '';
    for (var i = 0; i < bytes.length; i++) { s += String.fromCharCode(bytes[i]); }
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  function withIDs(list) {
    return (list || []).map(function (c) { return Object.assign({}, c, { id: decode(c.id) }); });
  }

  function creationOptions(pk) {
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === 'function') {
      return PublicKeyCredential.parseCreationOptionsFromJSON(pk);
    }
    var o = Object.assign({}, pk);
    o.challenge = decode(pk.challenge);
    o.user = Object.assign({}, pk.user, { id: decode(pk.user.id) });
    o.excludeCredentials = withIDs(pk.excludeCredentials);
    return o;
  }
  function requestOptions(pk) {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === 'function') {
      return PublicKeyCredential.parseRequestOptionsFromJSON(pk);
    }
    var o = Object.assign({}, pk);
    o.challenge = decode(pk.challenge);
    o.allowCredentials = withIDs(pk.allowCredentials);
    return o;
  }
  function credentialJSON(cred) {
    if (typeof cred.toJSON === 'function') { return cred.toJSON(); }
    var r = cred.response;
    var out = {
      id: cred.id, rawId: encode(cred.rawId), type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: encode(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = encode(r.attestationObject);
      if (r.getTransports) { out.response.transports = r.getTransports(); }
    } else {
      out.response.authenticatorData = encode(r.authenticatorData);
      out.response.signature = encode(r.signature);
      if (r.userHandle) { out.response.userHandle = encode(r.userHandle); }
    }
    return out;
  }

  function post(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json', 'X-CSRF-Token': csrf },
      body: JSON.stringify(body || {})
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        if (!resp.ok) {
          var err = new Error(data.error || text('refused', 'The server refused the request.'));
          err.next = data.next;
          throw err;
        }
        return data;
      });
    });
  }

  // Only same-origin paths are followed.
  function go(next) {
    if (typeof next === 'string' && next.charAt(0) === '/' && next.charAt(1) !== '/' && next.charAt(1) !== '\\') {
      window.location.assign(next);
    }
  }

  button.addEventListener('click', function () {
    var register = box.dataset.mode === 'register';
    var nickname = document.getElementById('nickname');
    button.disabled = true;
    status.hidden = true;
    post(box.dataset.begin, register ? { nickname: nickname ? nickname.value : '' } : {})
      .then(function (options) {
        return register
          ? navigator.credentials.create({ publicKey: creationOptions(options.publicKey) })
          : navigator.credentials.get({ publicKey: requestOptions(options.publicKey) });
      })
      .then(function (cred) { return post(box.dataset.finish, credentialJSON(cred)); })
      .then(function (result) { go(result.next); })
      .catch(function (e) {
        button.disabled = false;
        if (e && e.next) { go(e.next); return; }
        if (e && e.name === 'NotAllowedError') {
          say(text('cancelled', 'The security key request was cancelled or timed out. Try again.'));
        } else if (e && e.name === 'InvalidStateError') {
          say(text('exists', 'This security key is already registered.'));
        } else if (e && e.name === 'SecurityError') {
          say(text('address', 'Security keys cannot be used on this address. Ask your administrator.'));
        } else {
          say(e && e.message ? e.message : text('failed', 'Something went wrong. Try again.'));
        }
      });
  });
})();
