/* The C side of package rdp; see rdp.h. The Go callbacks (go*) are declared
 * in _cgo_export.h. */
#include <stdlib.h>
#include <string.h>

#include <winpr/synch.h>
#include <winpr/wlog.h>
#include <winpr/user.h>
#include <freerdp/freerdp.h>
#include <freerdp/gdi/gdi.h>
#include <freerdp/graphics.h>
#include <freerdp/codec/color.h>
#include <freerdp/addin.h>
#include <freerdp/channels/channels.h>
#include <freerdp/client/channels.h>
#include <freerdp/client/cmdline.h>
#include <freerdp/client/cliprdr.h>
#include <freerdp/client/disp.h>

#include "rdp.h"
#include "_cgo_export.h"

/* maxDirty bounds the rectangles handed to Go per paint; FreeRDP's own list
 * is bounded by its region count, and more are merged into their union. */
#define maxDirty 64

typedef struct {
	rdpContext base;
	uintptr_t handle;
	HANDLE wake;
	/* cliprdr is set on the session thread at post-connect; the channel's
	 * callbacks run on its own thread. */
	CliprdrClientContext* cliprdr;
	/* disp is set and cleared on the drdynvc thread and read on the
	 * session thread, hence the atomics. */
	DispClientContext* disp;
	int dispReady;
	/* The local clipboard text, UTF-16LE with its NUL, served to the
	 * server's data requests on the cliprdr thread. */
	CRITICAL_SECTION clipLock;
	BYTE* clipData;
	size_t clipLen;
	/* clipReady is set (under clipLock) once the server sent Monitor
	 * Ready: before that a client must send nothing on the channel
	 * (MS-RDPECLIP 1.3.2.1), and a server with no clipboard of its own
	 * (freerdp-shadow-cli 2) drops the whole connection on any PDU. */
	int clipReady;
	int connected;
} kwContext;

/* kwPointer is FreeRDP's pointer object with the Go-side id of its image. */
typedef struct {
	rdpPointer pointer;
	uint64_t id;
} kwPointer;

static __thread uintptr_t threadHandle;

static kwContext* kwctx(rdpContext* c) { return (kwContext*)c; }

/* Logging */

static BOOL kw_log_message(const wLogMessage* msg)
{
	if (threadHandle && msg->TextString)
		goLog(threadHandle, msg->Level, msg->TextString);
	return TRUE;
}

void kw_thread_handle(uintptr_t handle) { threadHandle = handle; }

void kw_log_setup(void)
{
	static wLogCallbacks callbacks;
	wLog* root = WLog_GetRoot();
	wLogAppender* appender;
	callbacks.message = kw_log_message;
	WLog_SetLogAppenderType(root, WLOG_APPENDER_CALLBACK);
	appender = WLog_GetLogAppender(root);
	WLog_ConfigureAppender(appender, "callbacks", &callbacks);
	/* Warnings and errors only: they explain failures; the rest is per-PDU
	 * noise. */
	WLog_SetLogLevel(root, WLOG_WARN);
}

/* Painting */

static BOOL kw_begin_paint(rdpContext* context)
{
	rdpGdi* gdi = context->gdi;
	HGDI_WND hwnd = gdi->primary->hdc->hwnd;
	hwnd->invalid->null = TRUE;
	hwnd->ninvalid = 0;
	return TRUE;
}

static void kw_paint_all(rdpContext* context)
{
	rdpGdi* gdi = context->gdi;
	int32_t r[4] = { 0, 0, gdi->width, gdi->height };
	goPaint(kwctx(context)->handle, gdi->primary_buffer, gdi->stride, gdi->width, gdi->height,
	        r, 1);
}

static BOOL kw_end_paint(rdpContext* context)
{
	rdpGdi* gdi = context->gdi;
	HGDI_WND hwnd = gdi->primary->hdc->hwnd;
	int32_t rects[4 * maxDirty];
	int n = 0;
	if (hwnd->invalid->null)
		return TRUE;
	if (hwnd->ninvalid <= 0 || hwnd->ninvalid > maxDirty)
	{
		rects[0] = hwnd->invalid->x;
		rects[1] = hwnd->invalid->y;
		rects[2] = hwnd->invalid->w;
		rects[3] = hwnd->invalid->h;
		n = 1;
	}
	else
	{
		for (int i = 0; i < hwnd->ninvalid; i++)
		{
			rects[4 * i] = hwnd->cinvalid[i].x;
			rects[4 * i + 1] = hwnd->cinvalid[i].y;
			rects[4 * i + 2] = hwnd->cinvalid[i].w;
			rects[4 * i + 3] = hwnd->cinvalid[i].h;
		}
		n = hwnd->ninvalid;
	}
	goPaint(kwctx(context)->handle, gdi->primary_buffer, gdi->stride, gdi->width, gdi->height,
	        rects, n);
	return TRUE;
}

static BOOL kw_desktop_resize(rdpContext* context)
{
	rdpSettings* s = context->settings;
	if (!gdi_resize(context->gdi, s->DesktopWidth, s->DesktopHeight))
		return FALSE;
	goResized(kwctx(context)->handle, context->gdi->width, context->gdi->height);
	kw_paint_all(context);
	return TRUE;
}

/* Pointer */

static uint64_t pointerIDs;

static BOOL kw_pointer_new(rdpContext* context, rdpPointer* pointer)
{
	kwPointer* p = (kwPointer*)pointer;
	size_t stride = 4 * (size_t)pointer->width;
	BYTE* data;
	if (pointer->width == 0 || pointer->height == 0 || pointer->width > 384 ||
	    pointer->height > 384)
	{
		p->id = 0;
		return TRUE;
	}
	data = calloc(stride, pointer->height);
	if (!data)
		return FALSE;
	if (!freerdp_image_copy_from_pointer_data(
	        data, PIXEL_FORMAT_BGRA32, stride, 0, 0, pointer->width, pointer->height,
	        pointer->xorMaskData, pointer->lengthXorMask, pointer->andMaskData,
	        pointer->lengthAndMask, pointer->xorBpp, &context->gdi->palette))
	{
		free(data);
		return FALSE;
	}
	p->id = __atomic_add_fetch(&pointerIDs, 1, __ATOMIC_RELAXED);
	goPointerNew(kwctx(context)->handle, p->id, data, pointer->width, pointer->height,
	             pointer->xPos, pointer->yPos);
	free(data);
	return TRUE;
}

static void kw_pointer_free(rdpContext* context, rdpPointer* pointer)
{
	kwPointer* p = (kwPointer*)pointer;
	if (p->id)
		goPointerFree(kwctx(context)->handle, p->id);
	p->id = 0;
}

static BOOL kw_pointer_set(rdpContext* context, const rdpPointer* pointer)
{
	goPointerSet(kwctx(context)->handle, ((const kwPointer*)pointer)->id);
	return TRUE;
}

static BOOL kw_pointer_set_null(rdpContext* context)
{
	goPointerSet(kwctx(context)->handle, 0);
	return TRUE;
}

static BOOL kw_pointer_set_default(rdpContext* context)
{
	goPointerSet(kwctx(context)->handle, (uint64_t)-1);
	return TRUE;
}

static BOOL kw_pointer_set_position(rdpContext* context, UINT32 x, UINT32 y) { return TRUE; }

/* Clipboard: the cliprdr channel's callbacks run on its own thread. */

static UINT kw_clip_send_formats(CliprdrClientContext* cliprdr, int haveText)
{
	CLIPRDR_FORMAT format = { CF_UNICODETEXT, NULL };
	CLIPRDR_FORMAT_LIST list = { 0 };
	list.msgType = CB_FORMAT_LIST;
	list.numFormats = haveText ? 1 : 0;
	list.formats = haveText ? &format : NULL;
	return cliprdr->ClientFormatList(cliprdr, &list);
}

static UINT kw_clip_monitor_ready(CliprdrClientContext* cliprdr,
                                  const CLIPRDR_MONITOR_READY* ready)
{
	kwContext* ctx = (kwContext*)cliprdr->custom;
	CLIPRDR_GENERAL_CAPABILITY_SET general = { 0 };
	CLIPRDR_CAPABILITIES caps = { 0 };
	UINT rc;
	int haveText;
	general.capabilitySetType = CB_CAPSTYPE_GENERAL;
	general.capabilitySetLength = 12;
	general.version = CB_CAPS_VERSION_2;
	general.generalFlags = CB_USE_LONG_FORMAT_NAMES;
	caps.cCapabilitiesSets = 1;
	caps.capabilitySets = (CLIPRDR_CAPABILITY_SET*)&general;
	rc = cliprdr->ClientCapabilities(cliprdr, &caps);
	if (rc != CHANNEL_RC_OK)
		return rc;
	/* Text set before now was kept back: announce it. */
	EnterCriticalSection(&ctx->clipLock);
	ctx->clipReady = 1;
	haveText = ctx->clipData != NULL;
	LeaveCriticalSection(&ctx->clipLock);
	goClipReady(ctx->handle);
	return kw_clip_send_formats(cliprdr, haveText);
}

static UINT kw_clip_server_caps(CliprdrClientContext* cliprdr, const CLIPRDR_CAPABILITIES* caps)
{
	return CHANNEL_RC_OK;
}

static UINT kw_clip_server_formats(CliprdrClientContext* cliprdr,
                                   const CLIPRDR_FORMAT_LIST* list)
{
	CLIPRDR_FORMAT_LIST_RESPONSE resp = { 0 };
	UINT rc;
	resp.msgType = CB_FORMAT_LIST_RESPONSE;
	resp.msgFlags = CB_RESPONSE_OK;
	rc = cliprdr->ClientFormatListResponse(cliprdr, &resp);
	if (rc != CHANNEL_RC_OK)
		return rc;
	for (UINT32 i = 0; i < list->numFormats; i++)
	{
		if (list->formats[i].formatId == CF_UNICODETEXT)
		{
			CLIPRDR_FORMAT_DATA_REQUEST req = { 0 };
			req.msgType = CB_FORMAT_DATA_REQUEST;
			req.requestedFormatId = CF_UNICODETEXT;
			return cliprdr->ClientFormatDataRequest(cliprdr, &req);
		}
	}
	return CHANNEL_RC_OK;
}

static UINT kw_clip_server_formats_response(CliprdrClientContext* cliprdr,
                                            const CLIPRDR_FORMAT_LIST_RESPONSE* resp)
{
	return CHANNEL_RC_OK;
}

static UINT kw_clip_data_request(CliprdrClientContext* cliprdr,
                                 const CLIPRDR_FORMAT_DATA_REQUEST* req)
{
	kwContext* ctx = (kwContext*)cliprdr->custom;
	CLIPRDR_FORMAT_DATA_RESPONSE resp = { 0 };
	UINT rc;
	resp.msgType = CB_FORMAT_DATA_RESPONSE;
	EnterCriticalSection(&ctx->clipLock);
	if (req->requestedFormatId == CF_UNICODETEXT && ctx->clipData)
	{
		resp.msgFlags = CB_RESPONSE_OK;
		resp.dataLen = (UINT32)ctx->clipLen;
		resp.requestedFormatData = ctx->clipData;
	}
	else
		resp.msgFlags = CB_RESPONSE_FAIL;
	rc = cliprdr->ClientFormatDataResponse(cliprdr, &resp);
	LeaveCriticalSection(&ctx->clipLock);
	return rc;
}

static UINT kw_clip_data_response(CliprdrClientContext* cliprdr,
                                  const CLIPRDR_FORMAT_DATA_RESPONSE* resp)
{
	kwContext* ctx = (kwContext*)cliprdr->custom;
	if ((resp->msgFlags & CB_RESPONSE_OK) && resp->requestedFormatData)
		goClipText(ctx->handle, (void*)resp->requestedFormatData, resp->dataLen);
	return CHANNEL_RC_OK;
}

int kw_clip_set(freerdp* inst, const void* utf16, size_t len)
{
	kwContext* ctx = kwctx(inst->context);
	BYTE* copy = malloc(len);
	int ready;
	if (!copy)
		return kwClipFailed;
	memcpy(copy, utf16, len);
	EnterCriticalSection(&ctx->clipLock);
	free(ctx->clipData);
	ctx->clipData = copy;
	ctx->clipLen = len;
	ready = ctx->clipReady && ctx->cliprdr;
	LeaveCriticalSection(&ctx->clipLock);
	if (!ready)
		return kwClipPending; /* announced at Monitor Ready */
	return kw_clip_send_formats(ctx->cliprdr, 1) == CHANNEL_RC_OK ? kwClipSent : kwClipFailed;
}

/* Display control: its callbacks run on the drdynvc thread. */

static UINT kw_disp_caps(DispClientContext* disp, UINT32 maxMonitors, UINT32 factorA,
                         UINT32 factorB)
{
	kwContext* ctx = (kwContext*)disp->custom;
	__atomic_store_n(&ctx->dispReady, 1, __ATOMIC_RELEASE);
	goDispReady(ctx->handle, maxMonitors, factorA, factorB);
	return CHANNEL_RC_OK;
}

int kw_disp_layout(freerdp* inst, uint32_t width, uint32_t height)
{
	kwContext* ctx = kwctx(inst->context);
	DispClientContext* disp = __atomic_load_n(&ctx->disp, __ATOMIC_ACQUIRE);
	DISPLAY_CONTROL_MONITOR_LAYOUT layout = { 0 };
	if (!disp || !__atomic_load_n(&ctx->dispReady, __ATOMIC_ACQUIRE))
		return 0;
	layout.Flags = DISPLAY_CONTROL_MONITOR_PRIMARY;
	layout.Width = width;
	layout.Height = height;
	layout.Orientation = ORIENTATION_LANDSCAPE;
	layout.DesktopScaleFactor = 100;
	layout.DeviceScaleFactor = 100;
	/* Physical size in millimetres at 96 dpi. */
	layout.PhysicalWidth = width * 254 / 960;
	layout.PhysicalHeight = height * 254 / 960;
	return disp->SendMonitorLayout(disp, 1, &layout) == CHANNEL_RC_OK;
}

/* Channels */

static void kw_channel_connected(void* context, ChannelConnectedEventArgs* e)
{
	kwContext* ctx = kwctx((rdpContext*)context);
	if (strcmp(e->name, CLIPRDR_SVC_CHANNEL_NAME) == 0)
	{
		CliprdrClientContext* cliprdr = (CliprdrClientContext*)e->pInterface;
		cliprdr->custom = ctx;
		cliprdr->MonitorReady = kw_clip_monitor_ready;
		cliprdr->ServerCapabilities = kw_clip_server_caps;
		cliprdr->ServerFormatList = kw_clip_server_formats;
		cliprdr->ServerFormatListResponse = kw_clip_server_formats_response;
		cliprdr->ServerFormatDataRequest = kw_clip_data_request;
		cliprdr->ServerFormatDataResponse = kw_clip_data_response;
		ctx->cliprdr = cliprdr;
	}
	else if (strcmp(e->name, DISP_DVC_CHANNEL_NAME) == 0)
	{
		DispClientContext* disp = (DispClientContext*)e->pInterface;
		disp->custom = ctx;
		disp->DisplayControlCaps = kw_disp_caps;
		__atomic_store_n(&ctx->disp, disp, __ATOMIC_RELEASE);
	}
}

static void kw_channel_disconnected(void* context, ChannelDisconnectedEventArgs* e)
{
	kwContext* ctx = kwctx((rdpContext*)context);
	if (strcmp(e->name, CLIPRDR_SVC_CHANNEL_NAME) == 0)
	{
		EnterCriticalSection(&ctx->clipLock);
		ctx->clipReady = 0;
		LeaveCriticalSection(&ctx->clipLock);
		ctx->cliprdr = NULL;
	}
	else if (strcmp(e->name, DISP_DVC_CHANNEL_NAME) == 0)
	{
		__atomic_store_n(&ctx->dispReady, 0, __ATOMIC_RELEASE);
		__atomic_store_n(&ctx->disp, NULL, __ATOMIC_RELEASE);
	}
}

/* Connection callbacks */

static BOOL kw_pre_connect(freerdp* inst)
{
	rdpContext* context = inst->context;
	freerdp_register_addin_provider(freerdp_channels_load_static_addin_entry, 0);
	PubSub_SubscribeChannelConnected(context->pubSub, kw_channel_connected);
	PubSub_SubscribeChannelDisconnected(context->pubSub, kw_channel_disconnected);
	return freerdp_client_load_addins(context->channels, inst->settings);
}

static BOOL kw_post_connect(freerdp* inst)
{
	rdpContext* context = inst->context;
	rdpPointer pointer = { 0 };
	if (!gdi_init(inst, PIXEL_FORMAT_BGRA32))
		return FALSE;
	inst->update->BeginPaint = kw_begin_paint;
	inst->update->EndPaint = kw_end_paint;
	inst->update->DesktopResize = kw_desktop_resize;
	pointer.size = sizeof(kwPointer);
	pointer.New = kw_pointer_new;
	pointer.Free = kw_pointer_free;
	pointer.Set = kw_pointer_set;
	pointer.SetNull = kw_pointer_set_null;
	pointer.SetDefault = kw_pointer_set_default;
	pointer.SetPosition = kw_pointer_set_position;
	graphics_register_pointer(context->graphics, &pointer);
	kwctx(context)->connected = 1;
	goResized(kwctx(context)->handle, context->gdi->width, context->gdi->height);
	kw_paint_all(context);
	return TRUE;
}

static void kw_post_disconnect(freerdp* inst)
{
	if (inst->context && inst->context->gdi)
		gdi_free(inst);
	kwctx(inst->context)->connected = 0;
}

/* With ExternalCertificateManagement every certificate comes here, whether
 * or not OpenSSL trusts it, and nothing is written to a known_hosts file. */
static int kw_verify_x509(freerdp* inst, const BYTE* data, size_t length, const char* host,
                          UINT16 port, DWORD flags)
{
	return goVerifyCert(kwctx(inst->context)->handle, (void*)data, length, flags);
}

/* The Ex callbacks are reached only without external certificate
 * management, which this package always sets: refuse, never trust blindly. */
static DWORD kw_verify_cert_ex(freerdp* inst, const char* host, UINT16 port,
                               const char* common_name, const char* subject, const char* issuer,
                               const char* fingerprint, DWORD flags)
{
	return 0;
}

static DWORD kw_verify_changed_cert_ex(freerdp* inst, const char* host, UINT16 port,
                                       const char* common_name, const char* subject,
                                       const char* issuer, const char* new_fingerprint,
                                       const char* old_subject, const char* old_issuer,
                                       const char* old_fingerprint, DWORD flags)
{
	return 0;
}

/* Credentials come from the config only: never prompt. */
static BOOL kw_authenticate(freerdp* inst, char** username, char** password, char** domain)
{
	return FALSE;
}

static int kw_logon_error_info(freerdp* inst, UINT32 data, UINT32 type)
{
	goLogonError(kwctx(inst->context)->handle, data, type);
	return 1;
}

static BOOL kw_context_new(freerdp* inst, rdpContext* context)
{
	kwContext* ctx = kwctx(context);
	ctx->wake = CreateEventA(NULL, TRUE, FALSE, NULL);
	if (!ctx->wake)
		return FALSE;
	InitializeCriticalSection(&ctx->clipLock);
	return TRUE;
}

static void kw_context_free(freerdp* inst, rdpContext* context)
{
	kwContext* ctx = kwctx(context);
	if (ctx->wake)
	{
		CloseHandle(ctx->wake);
		ctx->wake = NULL;
		DeleteCriticalSection(&ctx->clipLock);
	}
	free(ctx->clipData);
	ctx->clipData = NULL;
}

freerdp* kw_new(uintptr_t handle)
{
	freerdp* inst = freerdp_new();
	if (!inst)
		return NULL;
	inst->ContextSize = sizeof(kwContext);
	inst->ContextNew = kw_context_new;
	inst->ContextFree = kw_context_free;
	inst->PreConnect = kw_pre_connect;
	inst->PostConnect = kw_post_connect;
	inst->PostDisconnect = kw_post_disconnect;
	inst->Authenticate = kw_authenticate;
	inst->VerifyX509Certificate = kw_verify_x509;
	inst->VerifyCertificateEx = kw_verify_cert_ex;
	inst->VerifyChangedCertificateEx = kw_verify_changed_cert_ex;
	inst->LogonErrorInfo = kw_logon_error_info;
	if (!freerdp_context_new(inst))
	{
		freerdp_free(inst);
		return NULL;
	}
	kwctx(inst->context)->handle = handle;
	return inst;
}

int kw_configure(freerdp* inst, const kwConfig* cfg)
{
	rdpSettings* s = inst->settings;
	BOOL ok = TRUE;
	ok = ok && freerdp_settings_set_string(s, FreeRDP_ServerHostname, cfg->host);
	ok = ok && freerdp_settings_set_uint32(s, FreeRDP_ServerPort, cfg->port);
	if (cfg->username && *cfg->username)
		ok = ok && freerdp_settings_set_string(s, FreeRDP_Username, cfg->username);
	if (cfg->password && *cfg->password)
		ok = ok && freerdp_settings_set_string(s, FreeRDP_Password, cfg->password);
	if (cfg->domain && *cfg->domain)
		ok = ok && freerdp_settings_set_string(s, FreeRDP_Domain, cfg->domain);
	ok = ok && freerdp_settings_set_string(s, FreeRDP_ConfigPath, cfg->configDir);
	ok = ok && freerdp_settings_set_uint32(s, FreeRDP_DesktopWidth, cfg->width);
	ok = ok && freerdp_settings_set_uint32(s, FreeRDP_DesktopHeight, cfg->height);
	ok = ok && freerdp_settings_set_uint32(s, FreeRDP_ColorDepth, cfg->depth);
	ok = ok && freerdp_settings_set_bool(s, FreeRDP_SoftwareGdi, TRUE);
	ok = ok && freerdp_settings_set_bool(s, FreeRDP_ExternalCertificateManagement, TRUE);
	ok = ok && freerdp_settings_set_bool(s, FreeRDP_AutoLogonEnabled,
	                                     cfg->username && *cfg->username);
	/* A reconnect would send the same, possibly wrong, password again. */
	ok = ok && freerdp_settings_set_bool(s, FreeRDP_AutoReconnectionEnabled, FALSE);
	ok = ok && freerdp_settings_set_uint32(s, FreeRDP_KeyboardLayout, cfg->keyboardLayout);
	ok = ok && freerdp_settings_set_bool(s, FreeRDP_RedirectClipboard, cfg->clipboard != 0);
	ok = ok && freerdp_settings_set_bool(s, FreeRDP_SupportDisplayControl, TRUE);
	ok = ok && freerdp_settings_set_bool(s, FreeRDP_DynamicResolutionUpdate, TRUE);
	ok = ok && freerdp_settings_set_bool(s, FreeRDP_SupportDynamicChannels, TRUE);
	ok = ok && freerdp_settings_set_bool(s, FreeRDP_DeviceRedirection, FALSE);
	ok = ok && freerdp_settings_set_bool(s, FreeRDP_AudioPlayback, FALSE);
	ok = ok && freerdp_settings_set_bool(s, FreeRDP_SupportGraphicsPipeline, FALSE);
	switch (cfg->security)
	{
		case kwSecNLA:
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_NlaSecurity, TRUE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_TlsSecurity, FALSE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_RdpSecurity, FALSE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_ExtSecurity, FALSE);
			break;
		case kwSecTLS:
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_NlaSecurity, FALSE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_TlsSecurity, TRUE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_RdpSecurity, FALSE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_ExtSecurity, FALSE);
			break;
		case kwSecRDP:
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_NlaSecurity, FALSE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_TlsSecurity, FALSE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_RdpSecurity, TRUE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_ExtSecurity, FALSE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_UseRdpSecurityLayer, TRUE);
			break;
		default:
			/* "any" is NLA or TLS, whichever the server picks: standard
			 * RDP security never reaches the certificate check, and its
			 * RC4 keys come from whoever answers, so it is used only
			 * when asked for by name. */
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_NlaSecurity, TRUE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_TlsSecurity, TRUE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_RdpSecurity, FALSE);
			ok = ok && freerdp_settings_set_bool(s, FreeRDP_ExtSecurity, FALSE);
			break;
	}
	return ok;
}

int kw_connect(freerdp* inst)
{
	return freerdp_connect(inst);
}

int kw_wait(freerdp* inst, uint32_t timeoutMs)
{
	kwContext* ctx = kwctx(inst->context);
	HANDLE handles[MAXIMUM_WAIT_OBJECTS];
	DWORD n = 0, count;
	handles[n++] = ctx->wake;
	count = freerdp_get_event_handles(inst->context, &handles[n], ARRAYSIZE(handles) - n);
	if (count == 0)
		return 0;
	n += count;
	if (WaitForMultipleObjects(n, handles, FALSE, timeoutMs) == WAIT_FAILED)
		return 0;
	if (!freerdp_check_event_handles(inst->context))
		return 0;
	return !freerdp_shall_disconnect(inst);
}

void kw_wake(freerdp* inst) { SetEvent(kwctx(inst->context)->wake); }

void kw_clear_wake(freerdp* inst) { ResetEvent(kwctx(inst->context)->wake); }

void kw_abort(freerdp* inst) { freerdp_abort_connect(inst); }

uint32_t kw_last_error(freerdp* inst) { return freerdp_get_last_error(inst->context); }

uint32_t kw_selected_protocol(freerdp* inst)
{
	return freerdp_settings_get_uint32(inst->settings, FreeRDP_SelectedProtocol);
}

void kw_free(freerdp* inst)
{
	kwContext* ctx = kwctx(inst->context);
	if (ctx->connected)
		freerdp_disconnect(inst);
	freerdp_context_free(inst);
	freerdp_free(inst);
}

int kw_key(freerdp* inst, uint16_t flags, uint16_t code)
{
	return freerdp_input_send_keyboard_event(inst->input, flags, code);
}

int kw_unicode(freerdp* inst, uint16_t flags, uint16_t code)
{
	return freerdp_input_send_unicode_keyboard_event(inst->input, flags, code);
}

int kw_mouse(freerdp* inst, uint16_t flags, uint16_t x, uint16_t y)
{
	return freerdp_input_send_mouse_event(inst->input, flags, x, y);
}

int kw_has_hwheel(freerdp* inst)
{
	return freerdp_settings_get_bool(inst->settings, FreeRDP_HasHorizontalWheel);
}
