{{/* Name of the release's objects: the release name, or release-chart when it does not contain the chart name. */}}
{{- define "flotilla.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "flotilla.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: flotilla
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels selecting the node pods. */}}
{{- define "flotilla.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node
{{- end -}}

{{/* Application namespaces: the values, or the release namespace. */}}
{{- define "flotilla.namespaces" -}}
{{- if .Values.namespaces -}}
{{- join "," .Values.namespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Secrets namespace: the value, or the first application namespace. */}}
{{- define "flotilla.secretsNamespace" -}}
{{- if .Values.secretsNamespace -}}
{{- .Values.secretsNamespace -}}
{{- else -}}
{{- first (splitList "," (include "flotilla.namespaces" .)) -}}
{{- end -}}
{{- end -}}

{{/* Secret holding the API token. */}}
{{- define "flotilla.apiTokenSecret" -}}
{{- .Values.apiToken.existingSecret | default (printf "%s-api-token" (include "flotilla.fullname" .)) -}}
{{- end -}}

{{/* Secret holding the webhook secret, empty when none is configured. */}}
{{- define "flotilla.webhookSecret" -}}
{{- if .Values.webhookSecret.existingSecret -}}
{{- .Values.webhookSecret.existingSecret -}}
{{- else if .Values.webhookSecret.value -}}
{{- printf "%s-webhook" (include "flotilla.fullname" .) -}}
{{- end -}}
{{- end -}}
