{{/* Names, labels and image references shared by the templates. */}}

{{- define "finetune-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "finetune-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "finetune-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "finetune-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "finetune-operator.labels" -}}
{{ include "finetune-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: finetune-operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "finetune-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "finetune-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image: (dict "image" .Values.image "root" $) -> [registry/]repository(@digest|:tag), tag defaulting to appVersion. */}}
{{- define "finetune-operator.image" -}}
{{- $registry := .image.registry | default .root.Values.global.imageRegistry -}}
{{- $ref := .image.repository -}}
{{- if $registry -}}{{- $ref = printf "%s/%s" (trimSuffix "/" $registry) $ref -}}{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $ref .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the trainers run in, for the PodMonitor and NetworkPolicies (empty: every namespace). */}}
{{- define "finetune-operator.trainerNamespaces" -}}
{{- toJson (.override | default .root.Values.watchNamespaces) -}}
{{- end -}}

{{- define "finetune-operator.leaseName" -}}
{{- .Values.leaderElection.leaseName | default (include "finetune-operator.fullname" .) -}}
{{- end -}}

{{- define "finetune-operator.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "finetune-operator.fullname" .) -}}
{{- end -}}
