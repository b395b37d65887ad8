{{/*
The chart name, overridable with nameOverride.
*/}}
{{- define "irsa-doctor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of every resource: fullnameOverride, else the release name when it already
contains the chart name (helm install irsa-doctor … gives "irsa-doctor"), else
<release>-<chart>. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "irsa-doctor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "irsa-doctor.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "irsa-doctor.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Chart label: name-version.
*/}}
{{- define "irsa-doctor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource.
*/}}
{{- define "irsa-doctor.labels" -}}
helm.sh/chart: {{ include "irsa-doctor.chart" . }}
{{ include "irsa-doctor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: irsa-doctor
{{- end }}

{{/*
Selector labels: stable across upgrades.
*/}}
{{- define "irsa-doctor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "irsa-doctor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "irsa-doctor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "irsa-doctor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository:tag, or repository@digest when a digest is set.
*/}}
{{- define "irsa-doctor.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}
