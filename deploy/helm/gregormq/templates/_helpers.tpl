{{/* The release's resource name, at most 63 characters (a DNS label). */}}
{{- define "gregormq.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The headless Service: its DNS name lists every broker and is the cluster's seed. */}}
{{- define "gregormq.headless" -}}
{{- printf "%s-headless" (include "gregormq.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gregormq.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gregormq.labels" -}}
{{ include "gregormq.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
