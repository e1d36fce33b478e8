{{- define "keyway-gateway.fullname" -}}
{{- printf "%s-keyway-gateway" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "keyway-gateway.labels" -}}
app.kubernetes.io/name: keyway-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
keyway.dev/segment: {{ .Values.segment | quote }}
{{- end -}}

{{- define "keyway-gateway.selector" -}}
app.kubernetes.io/name: keyway-gateway
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "keyway-gateway.secret" -}}
{{- if .Values.existingSecret -}}{{ .Values.existingSecret }}{{- else -}}{{ include "keyway-gateway.fullname" . }}-config{{- end -}}
{{- end -}}
