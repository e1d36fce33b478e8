// The benchmark's peer viewer: stock noVNC, connected through websockify
// (served from the same origin) to the demo's Xvnc. Options come from the
// query string; the RFB object is window.rfb.
import RFB from '@novnc/novnc';

const params = new URLSearchParams(window.location.search);
const url = `ws://${window.location.host}/websockify`;
const rfb = new RFB(document.getElementById('screen'), url, {
  credentials: { password: params.get('password') ?? '' },
  shared: true,
});
rfb.scaleViewport = false;
rfb.resizeSession = false;
rfb.qualityLevel = 8; // the default, stated: the same JPEG quality our gateway asks for
rfb.addEventListener('connect', () => { window.rfbConnected = true; });
rfb.addEventListener('disconnect', (e) => { window.rfbDisconnected = e.detail; });
window.rfb = rfb;
