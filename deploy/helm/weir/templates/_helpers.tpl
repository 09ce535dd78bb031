{{/* The chart's name, truncated to what Kubernetes names allow. */}}
{{- define "weir.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's resource name: the release name, with the chart's unless it already has it. */}}
{{- define "weir.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "weir.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "weir.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "weir.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "weir.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "weir.adminSecretName" -}}
{{- default (printf "%s-admin" (include "weir.fullname" .)) .Values.admin.existingSecret }}
{{- end }}

{{- define "weir.configMapName" -}}
{{- default (include "weir.fullname" .) .Values.existingConfigMap }}
{{- end }}

{{- define "weir.redisUrl" -}}
{{- if eq .Values.redis.mode "deploy" }}
{{- printf "redis://%s-redis:6379" (include "weir.fullname" .) }}
{{- else }}
{{- .Values.redis.url }}
{{- end }}
{{- end }}
