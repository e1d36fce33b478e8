{{- define "keyway-portal.fullname" -}}
{{- printf "%s-keyway-portal" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "keyway-portal.labels" -}}
app.kubernetes.io/name: keyway-portal
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "keyway-portal.selector" -}}
app.kubernetes.io/name: keyway-portal
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Whether the portal runs as replicas: PostgreSQL and S3 recordings. */}}
{{- define "keyway-portal.clustered" -}}
{{- if and (or .Values.database.existingSecret (hasPrefix "postgres" .Values.database.url)) (hasPrefix "s3://" .Values.recordings.url) -}}true{{- end -}}
{{- end -}}

{{- define "keyway-portal.replicas" -}}
{{- if include "keyway-portal.clustered" . -}}
{{- .Values.replicaCount -}}
{{- else if gt (int .Values.replicaCount) 1 -}}
{{- fail "replicaCount above 1 needs a PostgreSQL database (database.url or database.existingSecret) and recordings.url s3://…" -}}
{{- else -}}
1
{{- end -}}
{{- end -}}
