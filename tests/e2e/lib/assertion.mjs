// Verifies the gateway's `x-mcpgate-assertion` header the way an upstream would: jose with the
// gateway's public JWKS (`<gateway>/.well-known/jwks.json`, fetched through Envoy), issuer and
// audience checked, header typ "JWT", EdDSA only.
import { createRemoteJWKSet, jwtVerify, decodeProtectedHeader } from 'jose';

export class AssertionVerifier {
  /**
   * @param {object} o
   * @param {string} o.jwksUrl
   * @param {string} o.issuer
   * @param {string} o.audience the route URL the assertion is for
   */
  constructor({ jwksUrl, issuer, audience }) {
    this.jwksUrl = jwksUrl;
    this.issuer = issuer;
    this.audience = audience;
    this.jwks = createRemoteJWKSet(new URL(jwksUrl), { cooldownDuration: 1000, timeoutDuration: 5000 });
  }

  /**
   * The outcome for the header values a request carried:
   *   {present: false} | {present: true, ok: true, claims, header} | {present: true, ok: false, error}
   * More than one header value is a failure (the filter must leave exactly one).
   */
  async verify(headerValue) {
    if (headerValue === undefined || headerValue === null) return { present: false, ok: false, error: 'no x-mcpgate-assertion header' };
    if (Array.isArray(headerValue)) {
      if (headerValue.length !== 1) return { present: true, ok: false, error: `${headerValue.length} x-mcpgate-assertion headers` };
      headerValue = headerValue[0];
    }
    if (headerValue.includes(',')) return { present: true, ok: false, error: 'x-mcpgate-assertion holds more than one value' };
    try {
      const { payload, protectedHeader } = await jwtVerify(headerValue, this.jwks, {
        issuer: this.issuer,
        audience: this.audience,
        typ: 'JWT',
        algorithms: ['EdDSA', 'Ed25519'],
        requiredClaims: ['sub', 'iat', 'exp', 'jti'],
      });
      return { present: true, ok: true, claims: payload, header: protectedHeader };
    } catch (e) {
      let header;
      try {
        header = decodeProtectedHeader(headerValue);
      } catch {
        header = undefined;
      }
      return { present: true, ok: false, error: `${e.code ?? e.name}: ${e.message}`, header };
    }
  }
}
